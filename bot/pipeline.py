"""One message's way to its reply: safety on the input, history and memory, context, generation,
safety on the candidates, and what is stored; the same for a live message and a recovered one.

The caller (:class:`bot.core.ChatCore`) has already given the message its place in its
conversation's line and, for a chat message, a place at the model worker.
"""

from __future__ import annotations

import asyncio
import logging

from bot import replies
from bot.commands import Command, CommandRunner
from bot.config import Config
from bot.context import ContextBuilder
from bot.messages import Reply
from bot.metrics import Metrics
from bot.slots import WorkerUnavailable
from bot.worker import Worker
from memory import ConversationKey, MemoryStore, StoredTurn
from memory.recall import Remembered
from model import Hypothesis
from safety import SafetyChecker, Verdict

logger = logging.getLogger(__name__)

WINDOW = 64  # the newest turns a context is built from; long-term memory searches the older ones


class Pipeline:
    def __init__(
        self,
        config: Config,
        memory: MemoryStore,
        worker: Worker,
        contexts: ContextBuilder,
        *,
        metrics: Metrics | None = None,
        safety: SafetyChecker | None = None,
    ) -> None:
        """``contexts`` builds the model inputs (:meth:`bot.context.ContextBuilder.for_model`);
        without ``safety`` nothing is checked (tests of other parts)."""
        self.config = config
        self.memory = memory
        self.worker = worker
        self.contexts = contexts
        self.metrics = metrics or Metrics()
        self.safety = safety
        self.commands = CommandRunner(memory, config.memory)

    async def respond(
        self, key: ConversationKey, text: str | None, command: Command | None, inbox_id: int | None
    ) -> Reply:
        """The reply to one message (``text`` None: not text; a ``command``: its result)."""
        if text is None:
            return Reply(replies.TEXT_ONLY)
        if not text:
            return Reply(replies.EMPTY)
        if command is not None:
            return await self.commands.run(command, key)
        return await self._chat(key, text, inbox_id)

    async def _chat(self, key: ConversationKey, text: str, inbox_id: int | None) -> Reply:
        care = self.config.safety.care
        need = self.safety.needs_care(text) if self.safety is not None and care.enabled else None
        if need is not None:  # a person in need gets care, not the abuse reply nor free generation
            return await self._with_care(key, text, need, inbox_id)
        # The input is checked before the model sees it: the word list and phrase patterns at once,
        # the classifier while the history loads. An unsafe input is stored flagged and never enters
        # a context.
        verdict = self.safety.quick(text) if self.safety is not None else None
        if verdict is not None and not verdict.safe:
            return await self._blocked_input(key, text, verdict, inbox_id)
        classify = asyncio.ensure_future(self.safety.classify([text])) if self.safety is not None else None
        try:
            history, remembered = await self._gather(key, text)
        finally:
            verdicts = await classify if classify is not None else None
        if verdicts is not None and not verdicts[0].safe:
            return await self._blocked_input(key, text, verdicts[0], inbox_id)
        turn_id = await self.memory.add_turn(key, "user", text, inbox_id=inbox_id)
        # Learning from the message runs while the model generates; it is done before the reply is.
        learning = asyncio.ensure_future(self._learn(key, turn_id, text))
        try:
            return await self._generate(key, text, history, remembered, inbox_id)
        finally:
            await learning

    async def _gather(self, key: ConversationKey, text: str) -> tuple[list[StoredTurn], list[Remembered]]:
        """The recent turns and the remembered material relevant to ``text``, in one session."""
        memory = self.config.memory
        if not memory.enabled or memory.budget_tokens == 0:
            return await self.memory.context_turns(key, limit=WINDOW), []
        return await self.memory.longterm.gather(key, text, window=WINDOW, search=memory.search_older_turns)

    async def _learn(self, key: ConversationKey, turn_id: int, text: str) -> None:
        if not self.config.memory.enabled:
            return
        try:
            learned = await self.memory.longterm.learn(key, turn_id, text)
        except Exception:  # the reply matters more than what could be learned from the message
            logger.exception("memory: could not store what the message on %s stated", key.platform)
            return
        if learned:
            logger.debug("memory: %d facts learned on %s", len(learned), key.platform)

    async def _generate(
        self,
        key: ConversationKey,
        text: str,
        history: list[StoredTurn],
        remembered: list[Remembered],
        inbox_id: int | None,
    ) -> Reply:
        """Generate, pick the first safe candidate and store it (a timeout or failure stores nothing)."""
        pairs = [*((t.role, t.text) for t in history), ("user", text)]
        context = await asyncio.to_thread(self.contexts.build, pairs, remembered)
        if context.truncated:
            self.metrics.contexts_truncated.inc()
        if self.config.logging.message_text and logger.isEnabledFor(logging.DEBUG):
            logger.debug(  # what the model sees, decoded from its input ids
                "model input for %s/%s (%d tokens): %r",
                key.platform,
                key.chat_id,
                len(context.ids),
                self.contexts.decode(context.ids),
            )
        try:
            hypotheses = await asyncio.wait_for(
                self.worker.generate(context.ids), timeout=self.config.model.timeout_seconds
            )
        except TimeoutError:
            logger.warning("generation timed out after %.0f s", self.config.model.timeout_seconds)
            self.metrics.errors.labels("timeout").inc()
            return Reply(replies.TIMEOUT)
        except WorkerUnavailable as exc:
            logger.warning("generation failed: %s", exc)
            self.metrics.errors.labels("generation").inc()
            return Reply(replies.FAILED)
        except Exception:
            logger.exception("generation failed")
            self.metrics.errors.labels("generation").inc()
            return Reply(replies.FAILED)
        reply = await self._first_safe([h for h in hypotheses if h.text.strip()])
        await self.memory.add_turn(key, "bot", reply, inbox_id=inbox_id)
        return Reply(reply)

    async def _with_care(self, key: ConversationKey, text: str, need: str, inbox_id: int | None) -> Reply:
        care = self.config.safety.care
        logger.info("safety: a %s disclosure on %s answered with care", need, key.platform)
        self.metrics.safety_care.labels(need).inc()
        reply = care.self_harm_reply if need == "self_harm" else care.harassed_reply
        hidden = not care.keep_in_context
        await self.memory.add_turn(key, "user", text, blocked=hidden, inbox_id=inbox_id)
        await self.memory.add_turn(key, "bot", reply, blocked=hidden, inbox_id=inbox_id)
        return Reply(reply)

    async def _blocked_input(
        self, key: ConversationKey, text: str, verdict: Verdict, inbox_id: int | None
    ) -> Reply:
        logger.info("safety: input on %s blocked, %s", key.platform, verdict.describe())
        self.metrics.safety_blocks.labels(verdict.stage or "unknown", "input").inc()
        await self.memory.add_turn(key, "user", text, blocked=True, inbox_id=inbox_id)
        return Reply(self.config.safety.blocked_input_reply)

    async def _first_safe(self, candidates: list[Hypothesis]) -> str:
        """The best candidate that passes both safety stages, else the change-of-topic reply."""
        if not candidates:
            return replies.NOTHING_TO_SAY
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
