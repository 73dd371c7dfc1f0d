"""kill -9 mid-generation and restart: each accepted message answered exactly once, the database intact."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import yaml

from tests.checkpoints import SLOW_GENERATION
from tests.fakes.telegram_api import FakeTelegram
from tests.test_selfhost import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "777:CRASH-TEST-TOKEN-abcdef"


async def start_daemon(workdir: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "TELEGRAM_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    with log.open("w") as sink:  # a file, not a pipe: a DEBUG log must never block on a full pipe
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=workdir, env=env, stderr=sink
        )


async def wait_healthy(port: int, daemon: asyncio.subprocess.Process, timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            assert daemon.returncode is None, "the daemon exited"
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("the daemon never became healthy")


def write_config(workdir: Path, checkpoint: Path, fake: FakeTelegram, port: int, **extra: object) -> None:
    """A daemon whose replies take a second or more (SLOW_GENERATION on the heavier checkpoint)."""
    (workdir / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "data_dir": str(workdir / "data"),
                "model": {
                    "source": str(checkpoint),
                    "device": "cpu",
                    "dtype": "float32",  # the slow path: the kill must come mid-generation
                    "generation": SLOW_GENERATION,
                },
                "telegram": {"enabled": True, "api_base_url": fake.base_url},
                "http": {"port": port},
                "safety": {"classifier": {"enabled": False}},
                **extra,
            }
        )
    )


async def test_a_second_signal_exits_at_once(tmp_path: Path, heavy_blenderbot_dir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = free_port()
    write_config(tmp_path, heavy_blenderbot_dir, fake, port)
    daemon = await start_daemon(tmp_path, tmp_path / "daemon.log")
    try:
        await wait_healthy(port, daemon)
        fake.send(fake.chat(3), 3, "a slow reply keeps the graceful shutdown waiting")
        await fake.wait_for(lambda: bool(fake.sent("sendChatAction", 3)))
        daemon.send_signal(signal.SIGINT)  # graceful: waits for the reply in flight (seconds)
        await asyncio.sleep(0.3)
        daemon.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(daemon.wait(), 30)
    finally:
        if daemon.returncode is None:
            daemon.kill()
        await fake.stop()
    log = (tmp_path / "daemon.log").read_text()
    assert code == 1, log[-3000:]
    assert "second SIGINT: exiting now" in log


async def test_kill_9_mid_generation_then_restart(tmp_path: Path, heavy_blenderbot_dir: Path) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = free_port()
    write_config(
        tmp_path, heavy_blenderbot_dir, fake, port, logging={"level": "DEBUG"}, worker={"max_batch": 1}
    )
    chats = {
        1: ["first from one", "second from one"],
        2: ["only from two"],
        3: ["first from three", "second"],
    }
    daemon = await start_daemon(tmp_path, tmp_path / "first.log")
    try:
        await wait_healthy(port, daemon)
        for chat_id, texts in chats.items():
            for text in texts:
                fake.send(fake.chat(chat_id), chat_id, text)
        # Kill while the first reply is being generated (SLOW_GENERATION), before any is sent:
        # a reply sent just before a kill, whose "answered" mark never reached the disk, would be sent
        # again by recovery (the one window where at-least-once cannot become exactly-once).
        await fake.wait_for(lambda: bool(fake.sent("sendChatAction")), timeout=60)
        await asyncio.sleep(0.3)
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
        answered_before = len(fake.sent("sendMessage"))
        assert answered_before < sum(map(len, chats.values())), "the kill came too late to test anything"

        daemon = await start_daemon(tmp_path, tmp_path / "second.log")
        await wait_healthy(port, daemon)
        total = sum(map(len, chats.values()))
        await fake.wait_for(lambda: len(fake.sent("sendMessage")) >= total, timeout=240)
        await asyncio.sleep(2.0)  # give a duplicate the chance to show up
        for chat_id, texts in chats.items():
            assert len(fake.sent("sendMessage", chat_id)) == len(texts), f"chat {chat_id}"
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 60) == 0
    finally:
        if daemon.returncode is None:
            daemon.kill()
        await fake.stop()

    db = sqlite3.connect(tmp_path / "data" / "blenderd.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    statuses = db.execute("SELECT status, count(*) FROM inbox GROUP BY status").fetchall()
    assert statuses == [("answered", total)]
    user_turns = db.execute("SELECT count(*) FROM turns WHERE role = 'user'").fetchone()[0]
    assert user_turns == total  # no message stored twice
    logs = [(tmp_path / name).read_text() for name in ("first.log", "second.log")]
    assert all("CRASH-TEST-TOKEN" not in log for log in logs)  # not even at DEBUG
    assert "recovering" in logs[1]
    mode = os.stat(tmp_path / "data" / "blenderd.sqlite3").st_mode & 0o777
    assert mode == 0o600
