"""Scale-out, measured on loopback: 2 daemon replicas (Telegram webhooks, one PostgreSQL) and 1, 2, 3
remote model workers (Redis Streams), all started as `python -m bot run` / `python -m bot worker`
processes against the fake Telegram server of the test suite, under many simulated people.

For each worker count: messages sent, replies, lost, duplicated, conversations out of order (from
the stored turns), throughput (replies per second) and its ratio to one worker. Then the same
load with 2 workers, one killed -9 mid-run. Then the latency the Redis hop adds: one message at a
time, post-to-reply p50/p99 with the model in the daemon against the same with one remote worker.
Bounded: every wait has a limit, and it stops by itself.

    python benchmarks/scale_test.py [--people 1000] [--messages 2] [--workers 1 2 3]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/14]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import asyncpg
import redis.asyncio as redis
import yaml

from benchmarks.machine import cpu_flags
from tests.checkpoints import HEAVY_SHAPE, build_blenderbot
from tests.cli import closed_port, wait_healthy
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "4242:SCALE-TOKEN-abcdefgh"
SECRET = "scale-secret-0123456789"
HOOK = "/telegram/webhook"
ROOT = Path(__file__).resolve().parent.parent
# tiny: the test suite's checkpoint (the model is a small part of each reply's cost); mid: a
# bigger random one (d_model 256, 6 decoder layers) with beam search, where the model dominates.
SHAPES: dict[str, dict[str, Any] | None] = {"tiny": None, "mid": HEAVY_SHAPE}
GENERATION: dict[str, dict[str, Any]] = {
    "tiny": {"num_beams": 1, "max_length": 12},
    "mid": {"num_beams": 4, "min_length": 20, "max_length": 20},
}


class Cluster:
    """Daemons and workers started from config files, as a self-hoster starts them."""

    def __init__(
        self,
        tmp: Path,
        checkpoint: Path,
        fake: FakeTelegram,
        database: str,
        remote: str | None,
        *,
        generation: dict[str, Any] | None = None,
        worker_threads: int | None = None,
    ):
        self.tmp, self.fake = tmp, fake
        self.raw: dict[str, Any] = {
            "data_dir": str(tmp / "data"),
            "model": {
                "source": str(checkpoint),
                "device": "cpu",
                "dtype": "float32",
                "generation": generation or {"num_beams": 1, "max_length": 12},
                "remote": remote,
                "timeout_seconds": 300,
            },
            "database": {"url": database},
            "telegram": {
                "enabled": True,
                "api_base_url": fake.base_url,
                "mode": "webhook",
                "webhook_url": "https://bot.example.test" + HOOK,
            },
            "worker": {"max_batch": 16, "queue_size": 512, "claim_after_seconds": 3},
            "rate_limit": {"messages": 1000, "per_seconds": 1},
            "safety": {"classifier": {"enabled": False}},
            "logging": {"level": "WARNING"},
        }
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("TELEGRAM_TOKEN", "DISCORD_TOKEN", "BLENDERD_REDIS_URL")
        }
        self.env.update(TELEGRAM_TOKEN=TOKEN, TELEGRAM_WEBHOOK_SECRET=SECRET, PYTHONPATH=str(ROOT))
        self.daemons: list[tuple[asyncio.subprocess.Process, int]] = []
        self.workers: list[asyncio.subprocess.Process] = []
        self.worker_threads = worker_threads  # torch threads per worker (one worker per core)

    async def _start(self, name: str, command: str, raw: dict[str, Any]) -> asyncio.subprocess.Process:
        env = dict(self.env)
        if command == "worker" and self.worker_threads:
            env.update(OMP_NUM_THREADS=str(self.worker_threads), MKL_NUM_THREADS=str(self.worker_threads))
        folder = self.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(raw))
        log = (folder / "log").open("w")
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(folder / "config.yaml"),
            command,
            cwd=folder,
            env=env,
            stderr=log,
            stdout=log,
        )

    async def start(self, daemons: int, workers: int) -> None:
        for i in range(workers):
            self.workers.append(await self._start(f"worker{i}", "worker", self.raw))
        for i in range(daemons):
            port = closed_port()
            raw = {**self.raw, "http": {"port": port}}
            self.daemons.append((await self._start(f"daemon{i}", "run", raw), port))
        for i, (process, port) in enumerate(self.daemons):
            await wait_healthy(port, process, self.tmp / f"daemon{i}" / "log", timeout=180)

    async def stop(self) -> None:
        for process in [p for p, _ in self.daemons] + self.workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in [p for p, _ in self.daemons] + self.workers:
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()


class Load:
    """People each send their messages one after another (the next after the 200 of the last, as
    Telegram does per chat), each to a random replica; a reply is matched to its chat."""

    def __init__(self, fake: FakeTelegram, ports: list[int], people: int, messages: int, base: int):
        self.fake, self.ports, self.people, self.messages, self.base = fake, ports, people, messages, base
        self.posted_at: dict[int, list[float]] = {}

    async def run(self, http: aiohttp.ClientSession, parallel: int = 64) -> None:
        gate = asyncio.Semaphore(parallel)

        async def person(chat: int) -> None:
            self.fake.chat(chat)
            for k in range(self.messages):
                async with gate:
                    message = self.fake.send(self.fake.chat(chat), chat, f"person {chat} says message {k}")
                    self.fake.updates.remove(
                        next(u for u in self.fake.updates if u.get("message") is message)
                    )
                    update = {"update_id": chat * 100 + k, "message": message}
                    self.posted_at.setdefault(chat, []).append(time.monotonic())
                    await post(http, random.choice(self.ports), update)

        await asyncio.gather(*(person(self.base + i) for i in range(self.people)))

    def chats(self) -> range:
        return range(self.base, self.base + self.people)

    def replies(self) -> Counter[int]:
        wanted = set(self.chats())
        return Counter(
            c for c in (int(call.params["chat_id"]) for call in self.fake.sent("sendMessage")) if c in wanted
        )


async def post(http: aiohttp.ClientSession, port: int, update: dict[str, Any]) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    for _ in range(50):  # as Telegram: retried until a 200
        async with http.post(f"http://127.0.0.1:{port}{HOOK}", json=update, headers=headers) as response:
            if response.status == 200:
                return
        await asyncio.sleep(0.2)
    raise SystemExit(f"an update was refused 50 times by the daemon on port {port}")


async def out_of_order(database: str, load: Load) -> int:
    """Conversations whose stored turns are not user, bot, user, bot ... in the order sent."""
    connection = await asyncpg.connect(database.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await connection.fetch(
            "SELECT c.chat_id, t.role, t.text FROM turns t JOIN conversations c ON c.id = t.conversation_id "
            "ORDER BY t.id"
        )
    finally:
        await connection.close()
    seen: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        seen.setdefault(row["chat_id"], []).append((row["role"], row["text"]))
    bad = 0
    for chat in load.chats():
        turns = seen.get(str(chat), [])
        roles = [role for role, _ in turns]
        said = [text for role, text in turns if role == "user"]
        expected = [f"person {chat} says message {k}" for k in range(load.messages)]
        if roles != ["user", "bot"] * load.messages or said != expected:
            bad += 1
    return bad


async def fresh(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    server = make_url(url)
    admin = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)


async def wait_for(check: Any, limit: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(every)
    return False


async def one_run(
    args: argparse.Namespace, tmp: Path, checkpoint: Path, workers: int, kill: bool
) -> dict[str, Any]:
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    database = await fresh(args.postgres_url, f"blenderd_scale_{workers}_{int(kill)}")
    client = redis.from_url(args.redis)
    await client.flushdb()
    cluster = Cluster(
        tmp / f"run{workers}{int(kill)}",
        checkpoint,
        fake,
        database,
        args.redis,
        generation=GENERATION[args.checkpoint],
        worker_threads=args.worker_threads,
    )
    try:
        await cluster.start(daemons=2, workers=workers)
        load = Load(fake, [port for _, port in cluster.daemons], args.people, args.messages, base=10_000)
        total = args.people * args.messages
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            sending = asyncio.create_task(load.run(http))
            if kill:  # one worker killed -9 once about a third of the replies are out
                await wait_for(lambda: sum(load.replies().values()) >= total // 3, args.limit_s)
                cluster.workers[0].send_signal(signal.SIGKILL)
            await sending
        done = await wait_for(lambda: sum(load.replies().values()) >= total, args.limit_s)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # a late duplicate would arrive now
        counts = load.replies()
        await cluster.stop()
        return {
            "workers": workers,
            "killed": kill,
            "sent": total,
            "replies": sum(counts.values()),
            "lost": sum(max(0, args.messages - counts[c]) for c in load.chats()),
            "duplicated": sum(max(0, counts[c] - args.messages) for c in load.chats()),
            "out_of_order": await out_of_order(database, load),
            "seconds": elapsed,
            "finished": done,
        }
    finally:
        await cluster.stop()
        await client.aclose()
        await fake.stop()


async def latency(args: argparse.Namespace, tmp: Path, checkpoint: Path, remote: str | None) -> list[float]:
    """Post-to-reply seconds, one message at a time, through one daemon (model in it, or remote)."""
    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    database = await fresh(args.postgres_url, f"blenderd_latency_{'remote' if remote else 'local'}")
    cluster = Cluster(
        tmp / f"latency{'r' if remote else 'l'}",
        checkpoint,
        fake,
        database,
        remote,
        generation=GENERATION[args.checkpoint],
        worker_threads=args.worker_threads,
    )
    if remote:
        client = redis.from_url(remote)
        await client.flushdb()
        await client.aclose()
    seconds: list[float] = []
    try:
        await cluster.start(daemons=1, workers=1 if remote else 0)
        port = cluster.daemons[0][1]
        async with aiohttp.ClientSession() as http:
            for i in range(args.latency_messages + 5):  # the first five warm up
                chat = 50_000 + i
                message = fake.send(fake.chat(chat), chat, f"one message at a time, number {i}")
                fake.updates.clear()
                began = time.monotonic()
                await post(http, port, {"update_id": i + 1, "message": message})
                await wait_for(lambda chat=chat: bool(fake.sent("sendMessage", chat)), 60, every=0.001)
                if i >= 5:
                    seconds.append(time.monotonic() - began)
    finally:
        await cluster.stop()
        await fake.stop()
    return seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2, help="per person, one after another")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--latency-messages", type=int, default=100)
    parser.add_argument("--postgres-url", default=os.environ.get("BLENDERD_TEST_POSTGRES_URL"))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--limit-s", type=float, default=600, help="the most any run waits for its replies")
    parser.add_argument("--keep", action="store_true", help="keep the processes' folders and logs")
    parser.add_argument("--checkpoint", choices=sorted(SHAPES), default="tiny")
    parser.add_argument(
        "--worker-threads", type=int, default=None, help="torch threads per worker (OMP_NUM_THREADS)"
    )
    args = parser.parse_args()
    if not args.postgres_url:
        raise SystemExit("--postgres-url (or BLENDERD_TEST_POSTGRES_URL) is needed: the replicas share it")
    random.seed(1)
    print(f"cpu: {os.cpu_count()} cores, flags: {cpu_flags()}")
    tmp = Path(tempfile.mkdtemp(prefix="blenderd-scale-"))
    try:
        checkpoint = build_blenderbot(tmp / "checkpoint", shape=SHAPES[args.checkpoint])
        rows = [await one_run(args, tmp, checkpoint, n, kill=False) for n in args.workers]
        rows.append(await one_run(args, tmp, checkpoint, 2, kill=True))
        local = await latency(args, tmp, checkpoint, None)
        remote = await latency(args, tmp, checkpoint, args.redis)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    base = next((r["sent"] / r["seconds"] for r in rows if r["workers"] == 1 and not r["killed"]), None)
    threads = f", {args.worker_threads} torch thread(s) per worker" if args.worker_threads else ""
    print(
        f"{args.people} people x {args.messages} messages, 2 daemon replicas on one PostgreSQL, "
        f"{args.checkpoint} checkpoint {GENERATION[args.checkpoint]}{threads}"
    )
    print("workers  killed  sent  replies  lost  duplicated  out_of_order  seconds  replies/s  vs 1 worker")
    for r in rows:
        rate = r["replies"] / r["seconds"]
        ratio = f"{rate / base:.2f}" if base else "-"
        print(
            f"{r['workers']:>7}  {'yes' if r['killed'] else 'no':>6}  {r['sent']:>4}  {r['replies']:>7}  "
            f"{r['lost']:>4}  {r['duplicated']:>10}  {r['out_of_order']:>12}  {r['seconds']:>7.1f}  "
            f"{rate:>9.1f}  {ratio:>11}" + ("" if r["finished"] else "  (limit reached)")
        )
    p50 = [statistics.median(local) * 1000, statistics.median(remote) * 1000]
    p99 = [pct(local, 0.99) * 1000, pct(remote, 0.99) * 1000]
    print(
        f"latency, one message at a time ({len(local)} each): "
        f"in-process p50 {p50[0]:.1f} ms p99 {p99[0]:.1f} ms; "
        f"remote worker p50 {p50[1]:.1f} ms p99 {p99[1]:.1f} ms; the Redis hop adds p50 "
        f"{p50[1] - p50[0]:.1f} ms, p99 {p99[1] - p99[0]:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
