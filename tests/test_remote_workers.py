"""model.remote: daemons send generation to `python -m bot worker` processes over the machine's
real Redis (127.0.0.1:6379), all started as a user starts them, from config files."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from bot import replies as says
from tests.cli import (
    closed_port,
    health,
    offline_env,
    one_error,
    run,
    start,
    start_daemon,
    stop,
    tiny,
    wait_for_log,
    wait_healthy,
    with_telegram,
    write_config,
)
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "4242:REMOTE-TOKEN-abcdefgh"
REDIS = "redis://127.0.0.1:6379/{db}"


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A Redis database of its own for one test (emptied before and after)."""
    url = REDIS.format(db=random.randint(1, 15))
    client = redis.from_url(url)
    await client.flushdb()
    yield url
    await client.flushdb()
    await client.aclose()


def replies(fake: FakeTelegram, chat: int) -> list[str]:
    return [str(c.params["text"]) for c in fake.sent("sendMessage", chat)]


async def start_worker(
    folder: Path, raw: dict[str, Any], name: str
) -> tuple[asyncio.subprocess.Process, Path]:
    config = write_config(folder, raw, name=f"{name}.yaml")
    log = folder / f"{name}.log"
    return await start("--config", str(config), "worker", cwd=folder, log=log), log


async def test_the_daemon_loads_no_model_and_workers_answer(
    tmp_path: Path, blenderbot_dir: Path, redis_url: str
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = closed_port()
    raw = with_telegram(tmp_path, blenderbot_dir, fake.base_url, port, model={"remote": redis_url})
    daemon, log = await start_daemon(tmp_path, raw, offline_env(TELEGRAM_TOKEN=TOKEN))
    workers: list[tuple[asyncio.subprocess.Process, Path]] = []
    try:
        await wait_for_log(log, "telegram is taking messages", daemon)
        answer = await health(port)
        assert answer is not None and answer[0] == 503 and answer[1]["model"] is False  # no worker yet
        fake.send(fake.chat(1), 1, "hello, is anyone there?")  # waits for a worker
        workers.append(await start_worker(tmp_path, raw, "worker-a"))
        await wait_healthy(port, daemon, log)
        for chat in (2, 3, 4):
            fake.send(fake.chat(chat), chat, f"tell me something, number {chat}")
        await fake.wait_for(lambda: all(replies(fake, c) for c in (1, 2, 3, 4)), timeout=90)
        assert all(len(replies(fake, c)) == 1 for c in (1, 2, 3, 4))
        mapped = Path(f"/proc/{daemon.pid}/maps").read_text()
        assert "libtorch" not in mapped  # the daemon never imported torch: the tokenizer is all it needs
        assert "libtorch" in Path(f"/proc/{workers[0][0].pid}/maps").read_text()
        assert await stop(daemon) == 0
        for worker, _ in workers:
            assert await stop(worker) == 0
    finally:
        await stop(daemon)
        for worker, _ in workers:
            await stop(worker)
        await fake.stop()
    daemon_text, worker_text = log.read_text(), workers[0][1].read_text()
    assert "generation goes to the model workers at " + redis_url in daemon_text
    assert " ready on cpu" not in daemon_text  # the daemon never built the model
    assert " ready on cpu" in worker_text and "takes jobs from" in worker_text
    assert "stopped after 4 jobs" in worker_text
    for text in (daemon_text, worker_text):
        assert "Traceback" not in text and "REMOTE-TOKEN" not in text


async def test_a_worker_killed_mid_batch_leaves_its_jobs_to_another(
    tmp_path: Path, heavy_blenderbot_dir: Path, redis_url: str
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = closed_port()
    raw = with_telegram(
        tmp_path,
        heavy_blenderbot_dir,
        fake.base_url,
        port,
        model={
            "remote": redis_url,
            "timeout_seconds": 240,
            "generation": {"num_beams": 100, "min_length": 60, "max_length": 60},  # seconds per batch
        },
        worker={"claim_after_seconds": 2, "max_batch": 4},
    )
    daemon, log = await start_daemon(tmp_path, raw, offline_env(TELEGRAM_TOKEN=TOKEN))
    doomed, doomed_log = await start_worker(tmp_path, raw, "worker-doomed")
    survivor: asyncio.subprocess.Process | None = None
    client = redis.from_url(redis_url, decode_responses=True)
    chats = [11, 12, 13, 14]
    try:
        await wait_healthy(port, daemon, log)
        for chat in chats:
            fake.send(fake.chat(chat), chat, f"a question that takes a while, from {chat}")
        for _ in range(600):  # until the doomed worker holds every job (read, not acknowledged)
            pending = await client.xpending("blenderd:jobs", "workers")
            if pending["pending"] == len(chats):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker never took the jobs: " + doomed_log.read_text()[-2000:])
        doomed.send_signal(signal.SIGKILL)
        await doomed.wait()
        assert not any(replies(fake, c) for c in chats), "killed too late: replies were already sent"
        survivor, _ = await start_worker(tmp_path, raw, "worker-survivor")
        await fake.wait_for(lambda: all(replies(fake, c) for c in chats), timeout=200)
        fake.send(fake.chat(15), 15, "one more, to be sure nothing else comes")
        await fake.wait_for(lambda: bool(replies(fake, 15)), timeout=200)
        assert [len(replies(fake, c)) for c in chats] == [1, 1, 1, 1]  # each answered exactly once
        assert await stop(daemon) == 0
    finally:
        await client.aclose()
        await stop(daemon)
        if survivor is not None:
            await stop(survivor)
        await stop(doomed)
        await fake.stop()
    survivor_text = (tmp_path / "worker-survivor.log").read_text()
    assert "took over 4 jobs of a worker that stopped answering" in survivor_text
    assert "Traceback" not in log.read_text() and "Traceback" not in survivor_text


def test_redis_unreachable_or_unset_is_one_line(tmp_path: Path, blenderbot_dir: Path) -> None:
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    raw = tiny(
        tmp_path, blenderbot_dir, web={"enabled": True}, http={"port": closed_port()}, model={"remote": dead}
    )
    config = write_config(tmp_path, raw)
    for command in ("run", "worker"):
        line = one_error(run("--config", str(config), command, cwd=tmp_path))
        assert (
            f"the model workers' Redis at {dead} cannot be reached" in line and "Connection refused" in line
        )
        assert "model.remote" in line
    checked = run("--config", str(config), "check-config", cwd=tmp_path)
    assert checked.returncode == 2
    assert f"problem  model workers: the model workers' Redis at {dead} cannot be reached" in checked.stdout
    local = write_config(tmp_path, tiny(tmp_path, blenderbot_dir), name="local.yaml")
    line = one_error(run("--config", str(local), "worker", cwd=tmp_path))
    assert "set model.remote" in line and "BLENDERD_REDIS_URL" in line
    bad = write_config(
        tmp_path, tiny(tmp_path, blenderbot_dir, model={"remote": "http://x"}), name="bad.yaml"
    )
    line = one_error(run("--config", str(bad), "check-config", cwd=tmp_path))
    assert "model.remote" in line and "redis://" in line


async def test_without_a_worker_a_message_times_out_and_its_job_is_dropped_later(
    tmp_path: Path, blenderbot_dir: Path, redis_url: str
) -> None:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = closed_port()
    raw = with_telegram(
        tmp_path, blenderbot_dir, fake.base_url, port, model={"remote": redis_url, "timeout_seconds": 2}
    )
    env = offline_env(TELEGRAM_TOKEN=TOKEN)
    daemon, log = await start_daemon(tmp_path, raw, env)
    worker: asyncio.subprocess.Process | None = None
    try:
        await wait_for_log(log, "telegram is taking messages", daemon)
        fake.send(fake.chat(21), 21, "anyone?")
        await fake.wait_for(lambda: bool(replies(fake, 21)), timeout=60)
        assert replies(fake, 21) == [says.TIMEOUT]
        worker, worker_log = await start_worker(tmp_path, raw, "worker-late")
        await wait_healthy(port, daemon, log)
        fake.send(fake.chat(22), 22, "and now?")
        await fake.wait_for(lambda: bool(replies(fake, 22)), timeout=60)
        assert replies(fake, 22) != [says.TIMEOUT]
        assert await stop(worker) == 0
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
        if worker is not None:
            await stop(worker)
        await fake.stop()
    assert "stopped after 1 jobs" in worker_log.read_text()  # the expired job was dropped, not generated
    assert "generation timed out after 2 s" in log.read_text()


async def test_busy_and_metrics_with_remote_workers(
    tmp_path: Path, blenderbot_dir: Path, redis_url: str
) -> None:
    """One place per daemon (worker.queue_size: 1) and no worker yet: the first message holds the
    place until its timeout, the second is told "busy" at once; /metrics counts both."""
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    port = closed_port()
    raw = with_telegram(
        tmp_path,
        blenderbot_dir,
        fake.base_url,
        port,
        model={"remote": redis_url, "timeout_seconds": 5},
        worker={"queue_size": 1},
    )
    env = offline_env(TELEGRAM_TOKEN=TOKEN)
    daemon, log = await start_daemon(tmp_path, raw, env)
    try:
        await wait_for_log(log, "telegram is taking messages", daemon)
        fake.send(fake.chat(41), 41, "the first, waiting for a worker")
        await fake.wait_for(lambda: bool(fake.sent("sendChatAction", 41)), timeout=60)
        fake.send(fake.chat(42), 42, "the second, while the only place is taken")
        await fake.wait_for(lambda: bool(replies(fake, 42)), timeout=60)
        assert replies(fake, 42) == [says.BUSY] and replies(fake, 41) == []
        await fake.wait_for(lambda: bool(replies(fake, 41)), timeout=60)
        assert replies(fake, 41) == [says.TIMEOUT]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        assert "blenderd_busy_replies_total 1.0" in metrics
        assert 'blenderd_errors_total{kind="timeout"} 1.0' in metrics
        assert await stop(daemon) == 0
    finally:
        await stop(daemon)
        await fake.stop()
