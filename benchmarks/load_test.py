"""Load test: hundreds of simulated people over fake Telegram and Discord servers (loopback only).

The real daemon (both adapters, the model worker, SQLite) runs in this process against the fake
platform servers from the test suite and a tiny random checkpoint. Each person sends several
messages, some all at once. The run is bounded in messages and time, stops by itself, and checks:
no message lost, none answered twice, each conversation's order kept; it reports the event-loop
lag (p50/p99/max) measured by a ticker in the daemon's own loop.

    python benchmarks/load_test.py [--telegram 200] [--discord 100] [--messages 3] [--limit-s 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.registry import Registry
from bot.app import App
from bot.config import parse_config
from bot.daemon import Daemon
from memory import ConversationKey
from tests.checkpoints import build_blenderbot
from tests.fakes.discord_api import FakeDiscord, user
from tests.fakes.telegram_api import FakeTelegram


async def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="blenderd-load-"))
    checkpoint = build_blenderbot(tmp / "ck")
    tg, dc = FakeTelegram(), FakeDiscord()
    await tg.start()
    await dc.start()
    discord.http.Route.BASE = dc.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(dc.gateway)
    config = parse_config(
        {
            "data_dir": str(tmp / "data"),
            "model": {
                "source": str(checkpoint),
                "device": "cpu",
                "generation": {"num_beams": 1, "max_length": 12},
            },
            "telegram": {"enabled": True, "api_base_url": tg.base_url},
            "discord": {"enabled": True, "slash_commands": False},
            "worker": {"max_batch": 16, "max_wait_ms": 10, "queue_size": 4096},
            "rate_limit": {"messages": 1000, "per_seconds": 1},
            "http": {"enabled": False},
            "safety": {"classifier": {"enabled": False}},
            "logging": {"level": "WARNING"},
        }
    )
    os.environ["TELEGRAM_TOKEN"], os.environ["DISCORD_TOKEN"] = tg.token, "x"
    daemon = Daemon(App(config), Registry(config))
    await daemon.start()
    await daemon.ready.wait()

    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    tick = asyncio.create_task(ticker())
    rng = random.Random(7)
    sent: dict[tuple[str, str, str], list[str]] = {}

    def expected(platform: str, chat: str, who: str) -> list[str]:
        return sent.setdefault((platform, chat, who), [])

    def replies_to(platform: str, chat: int) -> int:
        if platform == "telegram":
            return len(tg.sent("sendMessage", chat))
        return len(dc.posted(f"/channels/{chat}/messages"))

    async def person(platform: str, index: int) -> None:
        burst = rng.random() < 0.3  # some send everything at once
        chat_id = 10_000 + index
        for n in range(args.messages):
            text = f"{platform} person {index} says message {n}"
            if platform == "telegram":
                tg.send(tg.chat(chat_id), chat_id, text)
                expected(platform, str(chat_id), str(chat_id)).append(text)
            else:
                author = user(chat_id, f"user{index}")
                await dc.send_message(author, text, channel_id=chat_id, guild=False)
                expected(platform, str(chat_id), str(chat_id)).append(text)
            if not burst:
                deadline = time.monotonic() + 120
                while replies_to(platform, chat_id) < n + 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            else:
                await asyncio.sleep(rng.random() * 0.01)

    started = time.perf_counter()
    people = [person("telegram", i) for i in range(args.telegram)]
    people += [person("discord", i) for i in range(args.discord)]
    rng.shuffle(people)
    await asyncio.gather(*people)
    total = sum(len(v) for v in sent.values())
    deadline = time.monotonic() + args.limit_s
    while time.monotonic() < deadline:
        answered = sum(replies_to(p, int(chat)) for p, chat, _ in sent)
        if answered >= total:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # a late duplicate would show up here
    elapsed = time.perf_counter() - started
    stop.set()
    await tick

    lost = duplicated = out_of_order = 0
    for (platform, chat, who), texts in sent.items():
        got = replies_to(platform, int(chat))
        lost += max(0, len(texts) - got)
        duplicated += max(0, got - len(texts))
        turns = await daemon.app.core.memory.context_turns(ConversationKey(platform, chat, who), limit=100)
        if [t.text for t in turns if t.role == "user"] != texts:
            out_of_order += 1
    stats = daemon.app.worker.stats
    await daemon.stop()
    await tg.stop()
    await dc.stop()
    lag_ms = sorted(x * 1000 for x in lags)
    p99 = lag_ms[int(len(lag_ms) * 0.99) - 1]
    print(f"people: {args.telegram} on Telegram + {args.discord} on Discord, {args.messages} messages each")
    print(
        f"messages sent: {total}, replies: {total - lost + duplicated}, in {elapsed:.1f} s "
        f"({total / elapsed:.1f} messages/s)"
    )
    print(f"lost: {lost}, duplicated: {duplicated}, conversations out of order: {out_of_order}")
    print(
        f"generate calls: {stats.batches} for {stats.requests} requests "
        f"(mean batch {stats.requests / max(stats.batches, 1):.1f}, max {max(stats.batch_sizes, default=0)})"
    )
    print(
        f"event-loop lag: p50 {statistics.median(lag_ms):.1f} ms, p99 {p99:.1f} ms, max {lag_ms[-1]:.1f} ms "
        f"over {len(lag_ms)} ticks"
    )
    return 0 if lost == duplicated == out_of_order == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--telegram", type=int, default=200)
    parser.add_argument("--discord", type=int, default=100)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--limit-s", type=float, default=600)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
