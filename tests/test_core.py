"""The chat core with the real tiny model behind the real worker thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import model
from bot import replies
from bot.app import App
from bot.context import ContextBuilder
from bot.core import ChatCore
from bot.messages import Incoming
from bot.pipeline import Pipeline
from bot.worker import ModelWorker
from memory import ConversationKey, MemoryStore
from memory.engine import default_url
from tests.helpers import CountingModel, tiny_config


class Harness:
    def __init__(
        self, core: ChatCore, counting: CountingModel, memory: MemoryStore, worker: ModelWorker
    ) -> None:
        self.core, self.model, self.memory, self.worker = core, counting, memory, worker

    async def say(self, text: str | None, *, chat: str = "c", user: str = "u", platform: str = "test") -> str:
        reply = await self.core.handle(Incoming(platform, chat, user, text))
        assert reply is not None
        return reply.text


@pytest.fixture
async def make_harness(tmp_path: Path, blenderbot_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Harness] = []

    async def make(*, delay: float = 0.0, **sections: Any) -> Harness:
        config = tiny_config(tmp_path / "data", blenderbot_dir, **sections)
        memory = await MemoryStore.open(default_url(config.data_dir))
        holder: dict[str, CountingModel] = {}

        def load() -> CountingModel:
            overrides = config.model.generation.overrides()
            holder["m"] = CountingModel(
                model.load(blenderbot_dir, device="cpu", generation=overrides), delay=delay
            )
            return holder["m"]

        w = config.worker
        worker = ModelWorker(
            load,
            max_batch=w.max_batch,
            max_wait=w.max_wait_ms / 1000,
            queue_size=w.queue_size,
        )
        await worker.start()
        contexts = ContextBuilder.for_model(worker.model, config.persona, config.memory)
        harness = Harness(ChatCore(Pipeline(config, memory, worker, contexts)), holder["m"], memory, worker)
        started.append(harness)
        return harness

    yield make
    for h in started:
        await h.worker.stop()
        await h.memory.close()


async def test_a_message_gets_a_reply_and_both_are_stored(make_harness: Callable[..., Any]) -> None:
    h = await make_harness()
    reply = await h.say("Hello, how are you?")
    assert reply
    turns = await h.memory.context_turns(ConversationKey("test", "c", "u"))
    assert [(t.role, t.text) for t in turns] == [("user", "Hello, how are you?"), ("bot", reply)]
    assert h.model.thread_ids and threading.get_ident() not in h.model.thread_ids  # built and run off-loop


async def test_order_within_a_conversation_under_concurrency(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(delay=0.01)
    texts = [f"message number {i}" for i in range(8)]
    others = [h.say(f"other {i}", chat=f"o{i}", user=f"o{i}") for i in range(4)]
    await asyncio.gather(*(h.say(t) for t in texts), *others)
    turns = await h.memory.context_turns(ConversationKey("test", "c", "u"), limit=100)
    assert [t.text for t in turns if t.role == "user"] == texts
    assert [t.role for t in turns] == ["user", "bot"] * len(texts)  # each answered before the next is taken


async def test_concurrent_conversations_are_batched(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(delay=0.05, worker={"max_batch": 8, "max_wait_ms": 50})
    n = 12
    await asyncio.gather(*(h.say(f"hi {i}", chat=f"c{i}", user=f"u{i}") for i in range(n)))
    assert sum(h.model.calls) == n
    assert len(h.model.calls) < n
    assert max(h.model.calls) > 1


async def test_event_loop_stays_responsive_during_generation(
    make_harness: Callable[..., Any], heavy_blenderbot_dir: Path
) -> None:
    heavy = heavy_blenderbot_dir
    h = await make_harness(
        model={"source": str(heavy), "generation": {"num_beams": 4, "max_length": 40, "min_length": 40}}
    )
    h.model.inner = model.load(heavy, device="cpu", generation=h.core.config.model.generation.overrides())
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(h.say(f"tell me about {i}", chat=f"c{i}", user=f"u{i}") for i in range(6)))
    busy_for = time.perf_counter() - started
    stop.set()
    await tick
    assert busy_for > 0.5, "generation must run long enough for the lag measurement to mean something"
    assert max(lags) < 0.050, f"event loop lag {max(lags) * 1000:.1f} ms"


async def test_full_queue_answers_busy_at_once(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(delay=0.3, worker={"queue_size": 2, "max_batch": 1, "max_wait_ms": 0})
    slow = [asyncio.create_task(h.say(f"first {i}", chat=f"c{i}", user=f"u{i}")) for i in range(2)]
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    assert await h.say("one more", chat="late", user="late") == replies.BUSY
    assert time.perf_counter() - started < 0.1
    await asyncio.gather(*slow)


async def test_rate_limit_answers_politely(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(rate_limit={"messages": 2, "per_seconds": 60})
    assert await h.say("one") != replies.SLOW_DOWN
    assert await h.say("two") != replies.SLOW_DOWN
    assert await h.say("three") == replies.SLOW_DOWN
    assert await h.say("other person", user="v") != replies.SLOW_DOWN


async def test_slow_generation_gets_an_apology(make_harness: Callable[..., Any]) -> None:
    h = await make_harness(delay=1.0, model={"timeout_seconds": 0.2})
    started = time.perf_counter()
    assert await h.say("hello?") == replies.TIMEOUT
    assert time.perf_counter() - started < 0.9


async def test_commands(make_harness: Callable[..., Any]) -> None:
    h = await make_harness()
    assert "/reset" in await h.say("/help")
    await h.say("remember this")
    await h.say("/reset")
    key = ConversationKey("test", "c", "u")
    assert await h.memory.context_turns(key) == []
    await h.say("after reset")
    reply = await h.core.handle(Incoming("test", "c", "u", "/export"))
    assert reply is not None and reply.attachment is not None
    document = json.loads(reply.attachment.content)
    texts = [t["text"] for t in document["conversations"][0]["turns"]]
    assert texts[0] == "remember this" and "after reset" in texts
    assert "deleted everything" in await h.say("/forget")
    assert (await h.memory.export("test", "u"))["conversations"] == []
    assert "don't know the command /frobnicate" in await h.say("/frobnicate now")
    assert await h.core.handle(Incoming("test", "c", "u", "/forget@someotherbot")) is None
    assert await h.core.handle(Incoming("test", "c", "u", "/forget@blenderd"), bot_username="blenderd")
    assert h.model.calls == [1, 1]  # commands never reach the model


async def test_non_text_and_empty_messages(make_harness: Callable[..., Any]) -> None:
    h = await make_harness()
    assert await h.say(None) == replies.TEXT_ONLY
    assert await h.say("   \n\t ") == replies.EMPTY
    assert await h.say("\x00\x00") == replies.EMPTY
    assert await h.say("\ud800 lone surrogate")
    assert h.model.calls == [1]


async def test_app_wires_everything_from_config(tmp_path: Path, blenderbot_dir: Path) -> None:
    app = App(tiny_config(tmp_path / "data", blenderbot_dir, persona=["I like dogs."]))
    await app.start()
    reply = await app.core.handle(Incoming("test", "c", "u", "hi"))
    assert reply is not None and reply.text
    await app.stop()
    assert (tmp_path / "data" / "blenderd.sqlite3").exists()


async def test_unloadable_model_fails_start(tmp_path: Path) -> None:
    app = App(tiny_config(tmp_path / "data", tmp_path / "no-such-folder"))
    with pytest.raises(model.WeightsUnavailableError):
        await app.start()
