"""Chaos: `python -m bot run` killed with SIGKILL at random points, and a database outage.

Each round starts the daemon from a config file against a fake Telegram Bot API on 127.0.0.1,
sends a burst of messages from several people (group messages that mention the bot, so every
reply names the message it answers), and kills the daemon after a random delay: while messages
are being stored, generated or sent. After the rounds, one more start answers what is left; then
the database goes away for a few seconds (SQLite: another program holds the write lock;
PostgreSQL: the connection to the server is cut through a proxy) while more messages arrive.

It prints, for the whole run: messages sent, lost (never answered), duplicated (answered more
than once; the largest number for one conversation in one kill), out of order (a conversation's
reply to an older message after a newer one), and how long after the database's return the bot
answered again. Loopback only, bounded in rounds and time.

    python benchmarks/chaos.py --rounds 8 --database sqlite
    python benchmarks/chaos.py --rounds 8 --database postgresql --postgres-url postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from tests.checkpoints import build_blenderbot
from tests.cli import closed_port, offline_env, wait_healthy
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "9090:CHAOS-TOKEN-abcdef"


class Proxy:
    """A TCP proxy to the database server that can be cut (connections closed, new ones refused)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = closed_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.close()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._links.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links.difference_update({writer, up_writer})


class Run:
    def __init__(self, workdir: Path, fake: FakeTelegram, database_url: str | None) -> None:
        self.workdir, self.fake = workdir, fake
        self.http_port = closed_port()
        self.sent: dict[int, list[int]] = defaultdict(list)  # chat -> message ids, in order
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.marks: list[int] = []
        checkpoint = build_blenderbot(workdir / "checkpoint")
        config: dict[str, Any] = {
            "data_dir": str(workdir / "data"),
            "model": {
                "source": str(checkpoint),
                "device": "cpu",
                "generation": {"num_beams": 4, "max_length": 24},
            },
            "telegram": {"enabled": True, "api_base_url": fake.base_url},
            "http": {"port": self.http_port},
            "worker": {"max_batch": 8},
            "rate_limit": {"messages": 1000, "per_seconds": 1},
            "recovery": {"missed_after_seconds": 86400},
            "safety": {"classifier": {"enabled": False}},
        }
        if database_url:
            config["database"] = {"url": database_url}
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))

    async def start(self) -> None:
        self.marks.append(len(self.fake.sent("sendMessage")))  # answers from here on come from this start
        log = self.workdir / f"daemon{self.starts}.log"
        self.starts += 1
        with log.open("w") as sink:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.workdir,
                env=offline_env(TELEGRAM_TOKEN=TOKEN),
                stderr=sink,
            )
        await wait_healthy(self.http_port, self.process, log, timeout=180)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    def burst(self, people: int, each: int) -> None:
        for _ in range(each):
            for person in range(people):
                chat = self.fake.chat(-1000 - person, "supergroup")
                message = self.fake.send(
                    chat, 100 + person, f"@blenderd_bot message {len(self.sent[-1000 - person])}"
                )
                self.sent[-1000 - person].append(int(message["message_id"]))

    def answers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for call in self.fake.sent("sendMessage"):
            out[int(call.params["chat_id"])].append(int(self.fake.replied_to(call) or 0))
        return out

    def total(self) -> int:
        return sum(map(len, self.sent.values()))

    async def settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answered = self.answers()
            if all(set(ids) <= set(answered.get(chat, [])) for chat, ids in self.sent.items()):
                return
            await asyncio.sleep(0.2)


async def outage(run: Run, database: str, proxy: Proxy | None, seconds: float) -> float:
    """Take the database away for ``seconds`` seconds from its return to a reply."""
    before = len(run.fake.sent("sendMessage"))
    blocker = None
    if database == "sqlite":
        blocker = sqlite3.connect(run.workdir / "data" / "blenderd.sqlite3", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        assert proxy is not None
        await proxy.cut()
    run.burst(1, 1)
    await asyncio.sleep(seconds)
    if blocker is not None:
        blocker.execute("ROLLBACK")
        blocker.close()
    elif proxy is not None:
        await proxy.start()
    back = time.monotonic()
    while len(run.fake.sent("sendMessage")) <= before:
        if time.monotonic() - back > 120:
            return float("inf")
        await asyncio.sleep(0.05)
    return time.monotonic() - back


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--people", type=int, default=4)
    parser.add_argument("--messages", type=int, default=3, help="per person per round")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("BLENDERD_TEST_POSTGRES_URL"))
    parser.add_argument("--outage-seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    fake = FakeTelegram(token=TOKEN, username="blenderd_bot")
    await fake.start()
    proxy = None
    url = None
    if args.database == "postgresql":
        if not args.postgres_url:
            raise SystemExit("--postgres-url (or BLENDERD_TEST_POSTGRES_URL) is needed for postgresql")
        from sqlalchemy.engine import make_url

        target = make_url(await fresh_database(args.postgres_url))
        proxy = Proxy(target.host or "127.0.0.1", target.port or 5432)
        await proxy.start()
        url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), fake, url)
        started = time.monotonic()
        for _ in range(args.rounds):
            await run.start()
            run.burst(args.people, args.messages)
            await asyncio.sleep(random.uniform(0.05, 3.0))  # mid intake, mid generation or mid send
            await run.kill()
        await run.start()
        await run.settle(timeout=300)
        recovery = await outage(run, args.database, proxy, args.outage_seconds)
        await run.settle(timeout=120)
        assert run.process is not None
        run.process.send_signal(signal.SIGTERM)
        await run.process.wait()
        report(run, args, recovery, time.monotonic() - started)
    await fake.stop()
    if proxy is not None:
        await proxy.cut()


def report(run: Run, args: argparse.Namespace, recovery: float, wall: float) -> None:
    calls = [
        (int(c.params["chat_id"]), int(run.fake.replied_to(c) or 0)) for c in run.fake.sent("sendMessage")
    ]
    answered: dict[int, list[int]] = defaultdict(list)
    per_kill: Counter[tuple[int, int]] = Counter()  # (start after the kill, chat) -> duplicates
    seen: set[tuple[int, int]] = set()
    for index, (chat, message) in enumerate(calls):
        answered[chat].append(message)
        if (chat, message) in seen:
            after = sum(1 for mark in run.marks if mark <= index)
            per_kill[(after, chat)] += 1
        seen.add((chat, message))
    lost = sum(len(set(ids) - set(answered.get(chat, []))) for chat, ids in run.sent.items())
    out_of_order = 0
    for ids in answered.values():
        first = list(dict.fromkeys(ids))  # each message's first answer, in the order they went out
        out_of_order += sum(1 for a, b in itertools.pairwise(first) if b < a)
    worst = max(per_kill.values(), default=0)
    print(f"chaos: {args.rounds} kills on {args.database}, {args.people}x{args.messages} messages per round")
    print(f"sent {run.total()}, answers {len(calls)}, daemon starts {run.starts}, wall {wall:.0f} s")
    print(
        f"lost {lost}, duplicated {sum(per_kill.values())} (at most {worst} per conversation per kill), "
        f"out of order {out_of_order}"
    )
    print(
        f"database outage of {args.outage_seconds:.0f} s: answering again {recovery:.2f} s after its return"
    )


async def fresh_database(url: str) -> str:
    """A new, empty database ``blenderd_chaos`` on the server of ``url``; its URL."""
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(url)
    admin = await asyncpg.connect(
        host=server.host,
        port=server.port or 5432,
        user=server.username,
        password=server.password,
        database=server.database,
    )
    try:
        await admin.execute("DROP DATABASE IF EXISTS blenderd_chaos")
        await admin.execute("CREATE DATABASE blenderd_chaos")
    finally:
        await admin.close()
    return server.set(database="blenderd_chaos").render_as_string(hide_password=False)


if __name__ == "__main__":
    asyncio.run(main())
