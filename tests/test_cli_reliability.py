"""Reliability through `python -m bot run` against the fake Bot API: bad bytes, a database that
stops answering, a kill during recovery, "busy" and the rate limit, and hostile web requests."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.replies import BUSY, SLOW_DOWN
from tests.checkpoints import SLOW_GENERATION
from tests.cli import (
    closed_port,
    health,
    offline_env,
    start,
    stop,
    tiny,
    wait_healthy,
    with_telegram,
    write_config,
)
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "5151:RELIABLE-TOKEN-abcdef"
POSTGRES = os.environ.get("BLENDERD_TEST_POSTGRES_URL")


class Daemon:
    """A `python -m bot run` with Telegram on a fake Bot API, and its log."""

    def __init__(self, tmp_path: Path, raw: dict[str, Any], fake: FakeTelegram, port: int) -> None:
        self.tmp_path, self.raw, self.fake, self.port = tmp_path, raw, fake, port
        self.process: asyncio.subprocess.Process | None = None
        self.logs: list[Path] = []

    async def start(self) -> asyncio.subprocess.Process:
        log = self.tmp_path / f"daemon{len(self.logs)}.log"
        self.logs.append(log)
        config = write_config(self.tmp_path, self.raw)
        self.process = await start(
            "--config", str(config), "run", cwd=self.tmp_path, log=log, env=offline_env(TELEGRAM_TOKEN=TOKEN)
        )
        await wait_healthy(self.port, self.process, log)
        return self.process

    def log(self) -> str:
        return "".join(log.read_text() for log in self.logs)


async def daemon_for(tmp_path: Path, checkpoint: Path, **sections: Any) -> Daemon:
    fake = FakeTelegram(token=TOKEN, username="blenderd_bot")
    await fake.start()
    port = closed_port()
    raw = with_telegram(tmp_path, checkpoint, fake.base_url, port, **sections)
    return Daemon(tmp_path, raw, fake, port)


def texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [str(c.params["text"]) for c in fake.sent("sendMessage", chat_id)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_bad_bytes_never_stop_the_intake(tmp_path: Path, blenderbot_dir: Path, database: str) -> None:
    if database == "postgresql":
        if POSTGRES is None:
            pytest.skip("BLENDERD_TEST_POSTGRES_URL is not set (.ci/run sets it)")
        daemon = await daemon_for(tmp_path, blenderbot_dir, database={"url": POSTGRES})
    else:
        daemon = await daemon_for(tmp_path, blenderbot_dir)
    fake = daemon.fake
    # Chats of their own: the PostgreSQL test database outlives this run, and its inbox remembers ids.
    a, b, c = (random.randint(10**6, 10**9) for _ in range(3))
    try:
        await daemon.start()
        fake.send(fake.chat(a), a, "a lone \ud800 surrogate")
        fake.send(fake.chat(b), b, "hello\u0000world with a NUL")
        fake.send(fake.chat(c), c, "and a normal message after them")
        await fake.wait_for(lambda: all(fake.sent("sendMessage", chat) for chat in (a, b, c)), timeout=60)
        answer = await health(daemon.port)
        assert answer is not None and answer[0] == 200
        assert daemon.process is not None and await stop(daemon.process) == 0
        daemon.fake.send(fake.chat(c), c, "after a restart")
        await daemon.start()  # nothing is fetched again and nothing blocks the poller
        await fake.wait_for(lambda: len(fake.sent("sendMessage", c)) == 2, timeout=60)
        assert [len(fake.sent("sendMessage", chat)) for chat in (a, b)] == [1, 1]
        assert daemon.process is not None and await stop(daemon.process) == 0
    finally:
        if daemon.process is not None:
            await stop(daemon.process)
        await fake.stop()
    assert "Traceback" not in daemon.log()


async def test_a_held_sqlite_write_lock_pauses_the_intake_which_then_resumes(
    tmp_path: Path, blenderbot_dir: Path
) -> None:
    daemon = await daemon_for(tmp_path, blenderbot_dir)
    fake = daemon.fake
    blocker: sqlite3.Connection | None = None
    try:
        await daemon.start()
        blocker = sqlite3.connect(tmp_path / "data" / "blenderd.sqlite3", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        fake.send(fake.chat(71), 71, "written while the database is locked")
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:  # SQLite's busy timeout (10 s) passes first
            answer = await health(daemon.port)
            if answer is not None and answer[1].get("intake_waiting_for_database"):
                break
            await asyncio.sleep(0.2)
        assert answer is not None and answer[0] == 503 and answer[1]["database"] is False
        assert fake.sent("sendMessage", 71) == []
        blocker.execute("ROLLBACK")  # the database is back
        await fake.wait_for(lambda: bool(fake.sent("sendMessage", 71)), timeout=20)
        fake.send(fake.chat(72), 72, "and later")
        await fake.wait_for(lambda: bool(fake.sent("sendMessage", 72)), timeout=20)
        answer = await health(daemon.port)
        assert answer is not None and answer[0] == 200
    finally:
        if blocker is not None:
            blocker.close()
        if daemon.process is not None:
            await stop(daemon.process)
        await fake.stop()
    log = daemon.log()
    assert "the database is unavailable" in log and "the database is back" in log
    assert "Traceback" not in log


async def test_recovered_messages_are_answered_before_newer_ones(
    tmp_path: Path, heavy_blenderbot_dir: Path
) -> None:
    daemon = await daemon_for(
        tmp_path,
        heavy_blenderbot_dir,
        model={"generation": SLOW_GENERATION},
        worker={"max_batch": 1},
    )
    fake = daemon.fake
    group = fake.chat(-500, "supergroup")
    sent: list[int] = []
    try:
        process = await daemon.start()
        for i in range(3):
            sent.append(fake.send(group, 9, f"@blenderd_bot message {i}")["message_id"])
        await fake.wait_for(lambda: bool(fake.sent("sendChatAction", -500)), timeout=60)
        process.send_signal(signal.SIGKILL)  # mid-generation of the first
        await process.wait()
        sent.append(fake.send(group, 9, "@blenderd_bot a newer message")["message_id"])
        process = await daemon.start()  # recovery of 3 (or fewer) and the new one, which arrives at once
        await fake.wait_for(lambda: bool(fake.sent("sendMessage", -500)), timeout=120)
        process.send_signal(signal.SIGKILL)  # again, during recovery
        await process.wait()
        process = await daemon.start()
        await fake.wait_for(
            lambda: len({fake.replied_to(c) for c in fake.sent("sendMessage", -500)}) >= 4, 240
        )
        await asyncio.sleep(1.0)
        assert await stop(process) == 0
    finally:
        if daemon.process is not None:
            await stop(daemon.process)
        await fake.stop()
    answered = [fake.replied_to(c) for c in fake.sent("sendMessage", -500)]
    assert list(dict.fromkeys(answered)) == sent, daemon.log()[-3000:]  # every one, oldest first
    assert len(answered) - len(sent) <= 2  # at most the reply in flight at each of the two kills


async def test_busy_answers_do_not_use_up_the_rate_limit(tmp_path: Path, heavy_blenderbot_dir: Path) -> None:
    daemon = await daemon_for(
        tmp_path,
        heavy_blenderbot_dir,
        model={"generation": SLOW_GENERATION},
        worker={"queue_size": 1, "max_batch": 1},
        rate_limit={"messages": 2, "per_seconds": 3600},
    )
    fake = daemon.fake
    try:
        await daemon.start()
        fake.send(fake.chat(81), 81, "a slow question")
        await fake.wait_for(lambda: bool(fake.sent("sendChatAction", 81)), timeout=60)
        for text in ("first try", "second try", "third try"):
            fake.send(fake.chat(82), 82, text)
        await fake.wait_for(lambda: len(fake.sent("sendMessage", 82)) == 3, timeout=60)
        assert texts(fake, 82) == [BUSY, BUSY, BUSY]
        await fake.wait_for(lambda: bool(fake.sent("sendMessage", 81)), timeout=120)
        await asyncio.sleep(0.5)  # the reply is out; its place at the model is given back right after
        for count, text in enumerate(("now it is free", "and once more", "one too many"), start=4):
            fake.send(fake.chat(82), 82, text)  # one at a time: the queue holds one
            await fake.wait_for(lambda n=count: len(fake.sent("sendMessage", 82)) == n, timeout=120)  # type: ignore[misc]
            await asyncio.sleep(0.3)
    finally:
        if daemon.process is not None:
            await stop(daemon.process)
        await fake.stop()
    replies = texts(fake, 82)
    assert BUSY not in replies[3:5] and SLOW_DOWN not in replies[3:5]  # two real answers
    assert replies[5] == SLOW_DOWN  # the allowance counts the two messages that were answered


async def test_malformed_web_requests_get_a_4xx_json_error(tmp_path: Path, blenderbot_dir: Path) -> None:
    port = closed_port()
    raw = tiny(tmp_path, blenderbot_dir, web={"enabled": True}, http={"port": port})
    log = tmp_path / "daemon.log"
    process = await start("--config", str(write_config(tmp_path, raw)), "run", cwd=tmp_path, log=log)
    base = f"http://127.0.0.1:{port}/chat/api"
    good = {"blenderd_id": "0123456789abcdef0123456789abcdef"}
    cases: list[tuple[dict[str, str], bytes, int]] = [
        (good, b"[" * 100_000 + b"]" * 100_000, 413),
        (good, b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
        (good, b'{"text": ["a", "b"]}', 400),
        (good, b'{"text": null}', 400),
        (good, b'{"text": NaN}', 400),
        (good, b"\xff\xfe not utf-8", 400),
        (good, b'"just a string"', 400),
        (good, json.dumps({"text": "x" * 70_000}).encode(), 413),
        ({"blenderd_id": "x" * 200}, b'{"text": "hello"}', 400),
        ({"blenderd_id": "'; DROP TABLE turns; --"}, b'{"text": "hello"}', 400),
    ]
    try:
        await wait_healthy(port, process, log)
        async with aiohttp.ClientSession() as http:
            for cookies, body, status in cases:
                async with http.post(base + "/message", data=body, cookies=cookies) as response:
                    assert response.status == status, (body[:40], await response.text())
                    assert "error" in await response.json()
            async with http.get(base + "/history", cookies={"blenderd_id": "y" * 300}) as response:
                assert response.status == 200 and await response.json() == {"turns": []}
            async with http.post(
                base + "/message", json={"text": "still answering"}, cookies=good
            ) as response:
                assert response.status == 200 and (await response.json())["reply"]
    finally:
        await stop(process)
    assert "Traceback" not in log.read_text()
