"""The chat core: one entry point, :meth:`ChatCore.handle`, for every adapter.

For a text message: rate limit, reserve a place at the model worker (or answer "busy" at once),
store the user turn, load the conversation, build the context, generate, store and return the
reply. Messages of one conversation are answered in order, one at a time (a FIFO lock per
conversation); different conversations proceed concurrently and share model batches.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.commands import Command, help_text, parse_command
from bot.config import Config
from bot.context import build_context
from bot.messages import Attachment, Incoming, Reply
from bot.metrics import Metrics
from bot.ratelimit import RateLimiter
from bot.worker import Busy, ModelWorker, WorkerStopped
from memory import ConversationKey, MemoryStore
from model import Hypothesis
from safety import SafetyChecker, Verdict

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000  # far more than a 128-token context can hold; the tail is kept

BUSY = "I'm answering a lot of people right now. Please try again in a moment."
SLOW_DOWN = "You're sending messages faster than I can answer. Please wait a little and try again."
TIMEOUT = "Sorry, I took too long to think of an answer. Could you say that again?"
FAILED = "Sorry, something went wrong on my side while answering. Please try again."
TEXT_ONLY = "I can only read text messages, sorry. Could you type it out?"
EMPTY = "It looks like your message was empty. What would you like to talk about?"
STOPPING = "I'm restarting right now. Please send that again in a minute."


@dataclass
class _LockEntry:
    lock: asyncio.Lock
    users: int = 0


class ChatCore:
    def __init__(
        self,
        config: Config,
        memory: MemoryStore,
        worker: ModelWorker,
        metrics: Metrics | None = None,
        safety: SafetyChecker | None = None,
    ) -> None:
        self.config = config
        self.memory = memory
        self.worker = worker
        self.safety = safety
        self.metrics = metrics or Metrics()
        self.limiter = RateLimiter(config.rate_limit.messages, config.rate_limit.per_seconds)
        self._locks: dict[ConversationKey, _LockEntry] = {}
        self._accepting = True
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def close_intake(self) -> None:
        """Shutdown, step one: messages from now on get a "restarting" reply instead of a model reply."""
        self._accepting = False

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no message is being handled (or ``timeout``); True when idle."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @asynccontextmanager
    async def _conversation(self, key: ConversationKey) -> AsyncIterator[None]:
        entry = self._locks.setdefault(key, _LockEntry(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:  # asyncio.Lock wakes waiters in arrival order
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    async def handle(self, message: Incoming, *, bot_username: str | None = None) -> Reply | None:
        """The reply to ``message``, or None when it is not for this bot (a command for another bot)."""
        self._inflight += 1
        self._idle.clear()
        self.metrics.messages_in.labels(message.platform).inc()
        try:
            reply = await self._handle(message, bot_username)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        if reply is not None:
            self.metrics.messages_out.labels(message.platform).inc()
        return reply

    async def _handle(self, message: Incoming, bot_username: str | None) -> Reply | None:
        key = ConversationKey(message.platform, message.chat_id, message.user_id)
        if message.text is None:
            return Reply(TEXT_ONLY)
        text = _clean(message.text)
        if not text:
            return Reply(EMPTY)
        command = parse_command(text, bot_username=bot_username) if text.startswith("/") else None
        if text.startswith("/") and command is None and _addresses_other_bot(text):
            return None
        if command is not None:
            async with self._conversation(key):
                return await self._command(command, key)
        if not self._accepting:
            return Reply(STOPPING)
        if not self.limiter.allow((message.platform, message.user_id)):
            self.metrics.rate_limited.inc()
            return Reply(SLOW_DOWN)
        try:
            self.worker.reserve()
        except Busy:
            logger.warning("queue full (%d waiting); answered busy", self.worker.depth)
            self.metrics.busy.inc()
            return Reply(BUSY)
        except WorkerStopped:
            return Reply(STOPPING)
        try:
            async with self._conversation(key):
                return await self._chat(key, text)
        finally:
            self.worker.release()

    async def _chat(self, key: ConversationKey, text: str) -> Reply:
        # The input is checked before the model sees it: the phrase matcher at once, the classifier
        # while the history loads. An unsafe input is stored flagged and never enters a context.
        verdict = self.safety.quick(text) if self.safety is not None else None
        if verdict is not None and not verdict.safe:
            return await self._blocked_input(key, text, verdict)
        classify = asyncio.ensure_future(self.safety.classify([text])) if self.safety is not None else None
        try:
            history = await self.memory.context_turns(key)
        finally:
            verdicts = await classify if classify is not None else None
        if verdicts is not None and not verdicts[0].safe:
            return await self._blocked_input(key, text, verdicts[0])
        await self.memory.add_turn(key, "user", text)
        model = self.worker.model
        context = await asyncio.to_thread(
            build_context,
            [*((t.role, t.text) for t in history), ("user", text)],
            tokenizer=model.tokenizer,
            limit=model.max_positions,
            persona=self.config.persona,
        )
        if context.truncated:
            self.metrics.contexts_truncated.inc()
        if self.config.logging.message_text:
            logger.debug(
                "context for %s/%s: %d tokens, %r", key.platform, key.chat_id, len(context.ids), text
            )
        try:
            hypotheses = await asyncio.wait_for(
                self.worker.generate(context.ids), timeout=self.config.model.timeout_seconds
            )
        except TimeoutError:
            logger.warning("generation timed out after %.0f s", self.config.model.timeout_seconds)
            self.metrics.errors.labels("timeout").inc()
            return Reply(TIMEOUT)
        except Exception:
            logger.exception("generation failed")
            self.metrics.errors.labels("generation").inc()
            return Reply(FAILED)
        candidates = [h for h in hypotheses if h.text.strip()]
        reply = await self._first_safe(candidates)
        await self.memory.add_turn(key, "bot", reply)
        return Reply(reply)

    async def _blocked_input(self, key: ConversationKey, text: str, verdict: Verdict) -> Reply:
        logger.info("safety: input on %s blocked, %s", key.platform, verdict.describe())
        self.metrics.safety_blocks.labels(verdict.stage or "unknown", "input").inc()
        await self.memory.add_turn(key, "user", text, blocked=True)
        return Reply(self.config.safety.blocked_input_reply)

    async def _first_safe(self, candidates: list[Hypothesis]) -> str:
        """The best candidate that passes both safety stages, else the change-of-topic reply."""
        if not candidates:
            return "Hmm, I'm not sure what to say to that. Tell me more?"
        best = candidates[0]
        if self.safety is not None:
            verdicts = await self.safety.check_many([h.text.strip() for h in candidates])
            for rank, (hypothesis, verdict) in enumerate(zip(candidates, verdicts, strict=True)):
                if verdict.safe:
                    best = hypothesis
                    break
                logger.info("safety: candidate %d blocked, %s", rank, verdict.describe())
                self.metrics.safety_blocks.labels(verdict.stage or "unknown", "reply").inc()
            else:
                return self.config.safety.fallback_reply
        self.metrics.tokens_generated.inc(len(best.tokens))
        return best.text.strip()

    async def _command(self, command: Command, key: ConversationKey) -> Reply:
        logger.info("command /%s on %s", command.name, key.platform)
        if not command.known:
            return Reply(f"I don't know the command /{command.name}. Send /help to see what I can do.")
        if command.name == "help":
            return Reply(help_text())
        if command.name == "reset":
            await self.memory.reset(key)
            return Reply("Okay, let's start fresh. I won't bring up what we talked about before.")
        if command.name == "forget":
            deleted = await self.memory.forget(key.platform, key.user_id)
            return Reply(
                f"Done: I deleted everything I had stored about you on {key.platform} "
                f"({deleted} message{'s' if deleted != 1 else ''})."
            )
        document = await self.memory.export(key.platform, key.user_id)
        content = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
        turns = sum(len(c["turns"]) for c in document["conversations"])
        return Reply(
            f"Here is everything I have stored about you on {key.platform} ({turns} messages).",
            Attachment(filename="blenderd-export.json", content=content, mime_type="application/json"),
        )


def _clean(text: str) -> str:
    """Drop NULs and lone surrogates, trim, and keep the tail of an over-long message."""
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return text[-MAX_MESSAGE_CHARS:] if len(text) > MAX_MESSAGE_CHARS else text


def _addresses_other_bot(text: str) -> bool:
    first = text.split(maxsplit=1)[0]
    return "@" in first
