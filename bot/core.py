"""The chat core: one entry point, :meth:`ChatCore.handle`, for every adapter.

For a text message: take a place at the model worker (or answer "busy" at once), rate limit,
store the user turn, load the conversation and what is remembered (memory.longterm), build the
context, generate, store and return the reply. Messages of one conversation are answered in
order, one at a time (a FIFO lock per conversation); different conversations proceed
concurrently and share model batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from bot.commands import Command, CommandRunner, parse_command
from bot.config import Config
from bot.context import ContextBuilder
from bot.messages import Incoming, Reply, clean_text
from bot.metrics import Metrics
from bot.ordering import ConversationOrder, Place
from bot.ratelimit import RateLimiter
from bot.worker import Busy, ModelWorker, Slot, WorkerStopped
from memory import ConversationKey, MemoryStore, PendingMessage, StoredTurn
from memory.recall import Remembered
from model import Hypothesis
from safety import SafetyChecker, Verdict

logger = logging.getLogger(__name__)

BUSY = "I'm answering a lot of people right now. Please try again in a moment."
SLOW_DOWN = "You're sending messages faster than I can answer. Please wait a little and try again."
TIMEOUT = "Sorry, I took too long to think of an answer. Could you say that again?"
FAILED = "Sorry, something went wrong on my side while answering. Please try again."
TEXT_ONLY = "I can only read text messages, sorry. Could you type it out?"
EMPTY = "It looks like your message was empty. What would you like to talk about?"
STOPPING = "I'm restarting right now. Please send that again in a minute."
UNSTORABLE = "Sorry, I couldn't read that message. Could you send it again in other words?"
MISSED = (
    "Sorry, I was offline when you wrote to me ({when}) and missed your message. Could you send it again?"
)

Deliver = Callable[[Reply], Awaitable[None]]
WINDOW = 64  # the newest turns a context is built from; long-term memory searches the older ones


class ChatCore:
    def __init__(
        self,
        config: Config,
        memory: MemoryStore,
        worker: ModelWorker,
        metrics: Metrics | None = None,
        safety: SafetyChecker | None = None,
        contexts: ContextBuilder | None = None,
    ) -> None:
        """``contexts`` builds the model inputs; by default from the started worker's model."""
        self.config = config
        self.memory = memory
        self.worker = worker
        self.safety = safety
        self.metrics = metrics or Metrics()
        self.limiter = RateLimiter(config.rate_limit.messages, config.rate_limit.per_seconds)
        self.commands = CommandRunner(memory, config.memory)
        self.contexts = contexts or ContextBuilder(
            worker.model.tokenizer,
            worker.model.max_positions,
            config.persona,
            config.memory.budget_tokens,
            config.memory.style,
        )
        self._order = ConversationOrder()
        self.waiting_for_database: set[str] = set()  # intakes paused by a database outage
        self._accepting = True
        self._inflight: set[asyncio.Task[object]] = set()
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

    def cancel_inflight(self) -> int:
        """Shutdown, last step: cancel the handling still running (its messages stay pending)."""
        for task in self._inflight:
            task.cancel()
        return len(self._inflight)

    async def discard_attempt(self, inbox_id: int) -> None:
        """Remove what a failed attempt at answering an inbox message stored, before trying again."""
        await self.memory.drop_turns_of(inbox_id)

    async def history(self, key: ConversationKey, limit: int = 200) -> list[StoredTurn]:
        """The turns a conversation shows (for the web page): not reset, not blocked, oldest first."""
        return await self.memory.context_turns(key, limit=limit)

    async def accept(self, message: Incoming) -> tuple[bool, int | None]:
        """Write a platform message to the inbox as it arrives: (new, inbox id).

        Adapters call this in arrival order, before confirming the message to the platform. A
        message seen before (a redelivery) is not new: it was answered, or recovery answers it.
        """
        if message.message_id is None:
            return True, None
        key = ConversationKey(message.platform, message.chat_id, message.user_id)
        inbox_id = await self.memory.accept(
            key, message.message_id, message.text, is_private=message.is_private
        )
        if inbox_id is None:
            logger.info("a redelivered %s message was accepted before; not answered again", message.platform)
        return inbox_id is not None, inbox_id

    async def handle(
        self,
        message: Incoming,
        *,
        bot_username: str | None = None,
        deliver: Deliver | None = None,
        accepted: int | None = None,
    ) -> Reply | None:
        """Answer ``message``; None when it is not for this bot (a command for another bot, a redelivery).

        A platform message (one with a ``message_id``) is written to the inbox before it is
        processed, and marked answered only after ``deliver`` has sent the reply; one the process
        never answered is answered by :meth:`recover` at the next start. ``deliver`` runs under the
        conversation's lock, so the replies of one conversation go out in order.
        """
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        self._idle.clear()
        self.metrics.messages_in.labels(message.platform).inc()
        try:
            reply = await self._handle(message, bot_username, deliver, accepted)
        finally:
            self._inflight.discard(task)
            if not self._inflight:
                self._idle.set()
        if reply is not None:
            self.metrics.messages_out.labels(message.platform).inc()
        return reply

    async def _handle(
        self, message: Incoming, bot_username: str | None, deliver: Deliver | None, accepted: int | None
    ) -> Reply | None:
        key = ConversationKey(message.platform, message.chat_id, message.user_id)
        text = message.text  # cleaned where the message was made (bot.messages)
        command = parse_command(text, bot_username=bot_username) if text and text.startswith("/") else None
        if text and text.startswith("/") and command is None and _addresses_other_bot(text):
            if accepted is not None:
                await self.memory.settle(accepted, "ignored")
            return None
        slot: Slot | None = None
        if bool(text) and command is None:  # decided before any await, so arrival order is kept
            slot, early = self._admit(message)
            if early is not None:
                if deliver is not None:
                    await deliver(early)
                if accepted is not None:
                    await self.memory.settle(accepted, "answered")
                return early
        async with slot or contextlib.nullcontext(), self._order.take(key):  # place taken before any await
            inbox_id = accepted
            if inbox_id is None and message.message_id is not None:
                new, inbox_id = await self.accept(message)
                if not new:
                    return None
            reply = await self._respond(key, text, command, inbox_id)
            if deliver is not None:
                await deliver(reply)  # if this raises, the message stays pending for recovery
            if inbox_id is not None:
                await self.memory.settle(inbox_id, "answered")
            return reply

    def _admit(self, message: Incoming) -> tuple[Slot | None, Reply | None]:
        """A place at the model worker for a chat message, or the immediate answer when it cannot
        go to the model now."""
        if not self._accepting:
            return None, Reply(STOPPING)
        try:  # the queue first: a "busy" answer must not use up the person's allowance
            slot = self.worker.take_slot()
        except Busy:
            logger.warning("queue full (%d waiting); answered busy", self.worker.depth)
            self.metrics.busy.inc()
            return None, Reply(BUSY)
        except WorkerStopped:
            return None, Reply(STOPPING)
        if not message.local and not self.limiter.allow((message.platform, message.user_id)):
            slot.release()
            self.metrics.rate_limited.inc()
            return None, Reply(SLOW_DOWN)
        return slot, None

    async def _respond(
        self, key: ConversationKey, text: str | None, command: Command | None, inbox_id: int | None
    ) -> Reply:
        if text is None:
            return Reply(TEXT_ONLY)
        if not text:
            return Reply(EMPTY)
        if command is not None:
            return await self.commands.run(command, key)
        return await self._chat(key, text, inbox_id)

    async def recover(
        self, platform: str, deliver_to: Callable[[PendingMessage], Deliver], *, missed_after: float
    ) -> int:
        """Answer, exactly once, the messages of ``platform`` accepted but never answered (a crash)."""
        return await (await self.begin_recovery(platform, deliver_to, missed_after=missed_after))

    async def begin_recovery(
        self, platform: str, deliver_to: Callable[[PendingMessage], Deliver], *, missed_after: float
    ) -> asyncio.Future[int]:
        """Take each conversation's place in line for its unanswered messages, and answer them in the
        background, oldest first; the future says how many were answered.

        Call it before the platform's intake starts: newer messages of those conversations then
        wait behind the recovered ones. One older than ``missed_after`` seconds gets a note that it
        was missed instead of an answer.
        """
        rows = await self.memory.pending(platform)
        if rows:
            logger.info("recovering %d unanswered %s messages", len(rows), platform)
        by_conversation: dict[ConversationKey, list[PendingMessage]] = defaultdict(list)
        for row in rows:
            by_conversation[ConversationKey(row.platform, row.chat_id, row.user_id)].append(row)
        jobs = [
            self._recover_conversation(self._order.take(key), pending, deliver_to, missed_after)
            for key, pending in by_conversation.items()
        ]

        async def total() -> int:
            return sum(await asyncio.gather(*jobs))

        return asyncio.ensure_future(total())

    async def _recover_conversation(
        self,
        place: Place,
        rows: Sequence[PendingMessage],
        deliver_to: Callable[[PendingMessage], Deliver],
        missed_after: float,
    ) -> int:
        done = 0
        async with place:
            for row in rows:
                key = ConversationKey(row.platform, row.chat_id, row.user_id)
                age = (datetime.now(UTC) - row.received_at).total_seconds()
                if age > missed_after:
                    stamp = row.received_at.strftime("%Y-%m-%d %H:%M UTC")
                    reply, status = Reply(MISSED.format(when=stamp)), "missed"
                else:
                    await self.memory.drop_turns_of(row.inbox_id)  # what a crashed attempt stored
                    text = None if row.text is None else clean_text(row.text)
                    command = parse_command(text) if text and text.startswith("/") else None
                    chat = bool(text) and command is None
                    slot = await self.worker.wait_for_slot() if chat else None
                    async with slot or contextlib.nullcontext():
                        reply = await self._respond(key, text, command, row.inbox_id)
                    status = "answered"
                try:
                    await deliver_to(row)(reply)
                except Exception:
                    logger.exception("could not deliver a recovered %s reply; it stays pending", row.platform)
                    continue
                await self.memory.settle(row.inbox_id, status)
                done += 1
        return done

    async def _chat(self, key: ConversationKey, text: str, inbox_id: int | None = None) -> Reply:
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

    async def _generate(
        self,
        key: ConversationKey,
        text: str,
        history: list[StoredTurn],
        remembered: list[Remembered],
        inbox_id: int | None,
    ) -> Reply:
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
            return Reply(TIMEOUT)
        except Exception:
            logger.exception("generation failed")
            self.metrics.errors.labels("generation").inc()
            return Reply(FAILED)
        candidates = [h for h in hypotheses if h.text.strip()]
        reply = await self._first_safe(candidates)
        await self.memory.add_turn(key, "bot", reply, inbox_id=inbox_id)
        return Reply(reply)

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


def _addresses_other_bot(text: str) -> bool:
    first = text.split(maxsplit=1)[0]
    return "@" in first
