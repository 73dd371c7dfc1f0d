"""The chat core: one entry point, :meth:`ChatCore.handle`, for every adapter, and recovery.

A message goes one way, live or recovered: it takes its place in its conversation's line
(:mod:`bot.ordering`) and, for a chat message, a place at the model worker; the
:class:`~bot.pipeline.Pipeline` makes the reply; the adapter's ``deliver`` sends it; the inbox
(:mod:`bot.inbox`) marks it answered. Messages of one conversation are answered in order, one at
a time; different conversations proceed concurrently and share model batches. A live message the
worker cannot take now is answered "busy" at once; a recovered one waits for its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot import replies
from bot.commands import Command, parse_command
from bot.inbox import Inbox, Outcome, Unanswered, key_of
from bot.messages import Incoming, Reply
from bot.metrics import Metrics
from bot.ordering import ConversationOrder, Place
from bot.pipeline import Pipeline
from bot.ratelimit import RateLimiter
from bot.slots import Busy, Slot, WorkerStopped
from bot.worker import Worker
from memory import ConversationKey, MemoryStore, StoredTurn

logger = logging.getLogger(__name__)

Deliver = Callable[[Reply], Awaitable[None]]
DeliverTo = Callable[[Incoming], Deliver]  # an adapter's way to answer a message it took


@dataclass(frozen=True)
class _Job:
    """What a message asks for, decided before any await (so arrival order is kept)."""

    key: ConversationKey
    text: str | None
    command: Command | None

    @property
    def chat(self) -> bool:
        """A message for the model (not a command, not empty, not media)."""
        return bool(self.text) and self.command is None


def _job(message: Incoming, bot_username: str | None) -> _Job | None:
    """None for a command addressed to another bot (``/help@other_bot``)."""
    text = message.text  # cleaned where the message was made (bot.messages)
    command = parse_command(text, bot_username=bot_username) if text and text.startswith("/") else None
    if text and text.startswith("/") and command is None and "@" in text.split(maxsplit=1)[0]:
        return None
    return _Job(key_of(message), text, command)


class ChatCore:
    def __init__(self, pipeline: Pipeline) -> None:
        """The core around ``pipeline``, on its config, database, model worker and metrics."""
        config = pipeline.config
        self.pipeline = pipeline
        self.config = config
        self.memory: MemoryStore = pipeline.memory
        self.worker: Worker = pipeline.worker
        self.metrics: Metrics = pipeline.metrics
        self.inbox = Inbox(self.memory)
        self.limiter = RateLimiter(config.rate_limit.messages, config.rate_limit.per_seconds)
        self._order = ConversationOrder()
        self._deliveries: dict[str, tuple[DeliverTo, str | None]] = {}
        self.waiting_for_database: set[str] = set()  # intakes paused by a database outage
        self._accepting = True
        self._inflight: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle ---------------------------------------------------------------------------

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

    # -- what adapters call ------------------------------------------------------------------

    async def accept(self, message: Incoming) -> tuple[bool, int | None]:
        """Write a platform message to the inbox as it arrives: (new, inbox id). Adapters call this
        in arrival order, before confirming the message to the platform."""
        return await self.inbox.accept(message)

    async def discard_attempt(self, inbox_id: int) -> None:
        """Remove what a failed attempt at answering an inbox message stored, before trying again."""
        await self.inbox.discard_attempt(inbox_id)

    async def history(self, key: ConversationKey, limit: int = 200) -> list[StoredTurn]:
        """The turns a conversation shows (for the web page): not reset, not blocked, oldest first."""
        return await self.memory.context_turns(key, limit=limit)

    async def handle(
        self,
        message: Incoming,
        *,
        bot_username: str | None = None,
        deliver: Deliver | None = None,
        accepted: int | None = None,
    ) -> Reply | None:
        """Answer ``message``; None when it is not for this bot (a command for another bot, a redelivery).

        ``accepted`` is its inbox id when the adapter has stored it already; otherwise a platform
        message (one with a ``message_id``) is stored here first. It is marked answered only after
        ``deliver`` has sent the reply, under the conversation's place in line, so the replies of
        one conversation go out in order; one never answered is answered by recovery.
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
        job = _job(message, bot_username)
        if job is None:
            await self.inbox.settle(accepted, "ignored")
            return None
        slot: Slot | None = None
        if job.chat:  # decided before any await, so arrival order is kept
            slot, early = self._admit(message)
            if early is not None:
                await self._send(early, deliver, accepted, "answered")
                return early
        async with slot or contextlib.nullcontext(), self._order.take(job.key):  # place taken at once
            inbox_id = accepted
            if inbox_id is None:
                new, inbox_id = await self.inbox.accept(message)
                if not new:
                    return None
            return await self._answer(job, inbox_id, deliver, slot)

    def _admit(self, message: Incoming) -> tuple[Slot | None, Reply | None]:
        """A place at the model worker for a chat message, or the immediate answer when it cannot
        go to the model now."""
        if not self._accepting:
            return None, Reply(replies.STOPPING)
        try:  # the queue first: a "busy" answer must not use up the person's allowance
            slot = self.worker.take_slot()
        except Busy:
            logger.warning("queue full (%d waiting); answered busy", self.worker.depth)
            self.metrics.busy.inc()
            return None, Reply(replies.BUSY)
        except WorkerStopped:
            return None, Reply(replies.STOPPING)
        if not message.local and not self.limiter.allow((message.platform, message.user_id)):
            slot.release()
            self.metrics.rate_limited.inc()
            return None, Reply(replies.SLOW_DOWN)
        return slot, None

    async def _answer(
        self, job: _Job, inbox_id: int | None, deliver: Deliver | None, slot: Slot | None
    ) -> Reply | None:
        """The one way from a message to its sent reply: the pipeline (holding ``slot``, given back
        when it is done), then delivery, then the inbox. None when another daemon answered it.

        Under the conversation's lock (one message at a time across daemons on one PostgreSQL),
        messages of the conversation that other daemons accepted earlier and have not answered
        yet are answered first, so the conversation keeps its order whichever daemon took what.
        """
        async with self.memory.locks.conversation(job.key), slot or contextlib.nullcontext():
            if inbox_id is not None and self.memory.locks.shared:
                for earlier in await self.inbox.earlier(job.key, inbox_id):
                    await self._answer_for_another(earlier)
                if not await self.inbox.is_pending(inbox_id):
                    return None  # answered by the daemon that held the lock before us
            reply = await self.pipeline.respond(job.key, job.text, job.command, inbox_id)
            await self._send(reply, deliver, inbox_id, "answered")
        return reply

    def attach(self, platform: str, deliver_to: DeliverTo, bot_username: str | None = None) -> None:
        """How to answer ``platform``'s messages that this daemon did not take itself (recovered,
        or accepted by another daemon earlier in a conversation this one answers now)."""
        self._deliveries[platform] = (deliver_to, bot_username)

    async def _answer_for_another(self, item: Unanswered) -> None:
        """Answer a message another daemon accepted (under its conversation's lock and this
        message's place at the model); one that fails stays pending for its own daemon."""
        attached = self._deliveries.get(item.message.platform)
        if attached is None:
            return
        deliver_to, username = attached
        try:
            await self.inbox.discard_attempt(item.inbox_id)
            job = _job(item.message, username)
            if job is None:
                await self.inbox.settle(item.inbox_id, "ignored")
                return
            reply = await self.pipeline.respond(job.key, job.text, job.command, item.inbox_id)
            await self._send(reply, deliver_to(item.message), item.inbox_id, "answered")
        except Exception:
            logger.exception(
                "answering an earlier %s message of the conversation failed", item.message.platform
            )

    async def _send(
        self, reply: Reply, deliver: Deliver | None, inbox_id: int | None, outcome: Outcome
    ) -> None:
        if deliver is not None:
            await deliver(reply)  # if this raises, the message stays pending for recovery
        await self.inbox.settle(inbox_id, outcome)

    # -- recovery ----------------------------------------------------------------------------

    async def recover(
        self, platform: str, deliver_to: DeliverTo, *, missed_after: float, bot_username: str | None = None
    ) -> int:
        """Answer, exactly once, the messages of ``platform`` accepted but never answered (a crash)."""
        return await (
            await self.begin_recovery(
                platform, deliver_to, missed_after=missed_after, bot_username=bot_username
            )
        )

    async def begin_recovery(
        self, platform: str, deliver_to: DeliverTo, *, missed_after: float, bot_username: str | None = None
    ) -> asyncio.Future[int]:
        """Take each conversation's place in line for its unanswered messages, and answer them in the
        background, oldest first; the future says how many were answered.

        Call it before the platform's intake starts: newer messages of those conversations then
        wait behind the recovered ones. One older than ``missed_after`` seconds gets a note that it
        was missed instead of an answer.
        """
        self.attach(platform, deliver_to, bot_username)
        found = await self.inbox.unanswered(platform)
        if found:
            logger.info("recovering %d unanswered %s messages", sum(map(len, found.values())), platform)
        jobs = [
            self._recover(self._order.take(key), messages, deliver_to, missed_after, bot_username)
            for key, messages in found.items()
        ]

        async def total() -> int:
            return sum(await asyncio.gather(*jobs))

        return asyncio.ensure_future(total())

    async def _recover(
        self,
        place: Place,
        messages: Sequence[Unanswered],
        deliver_to: DeliverTo,
        missed_after: float,
        bot_username: str | None,
    ) -> int:
        done = 0
        async with place:
            for item in messages:
                deliver = deliver_to(item.message)
                try:
                    if item.age() > missed_after:
                        when = item.received_at.strftime("%Y-%m-%d %H:%M UTC")
                        await self._send(
                            Reply(replies.MISSED.format(when=when)), deliver, item.inbox_id, "missed"
                        )
                        done += 1
                        continue
                    await self.inbox.discard_attempt(item.inbox_id)  # what a crashed attempt stored
                    job = _job(item.message, bot_username)
                    if job is None:
                        await self.inbox.settle(item.inbox_id, "ignored")
                        continue
                    slot = await self.worker.wait_for_slot() if job.chat else None  # waits, never "busy"
                    await self._answer(job, item.inbox_id, deliver, slot)
                    done += 1
                except WorkerStopped:
                    break  # shutting down: the rest stay pending for the next start
                except Exception:
                    logger.exception(
                        "could not answer a recovered %s message; it stays pending", item.message.platform
                    )
        return done
