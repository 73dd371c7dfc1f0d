"""The intake: a platform's messages stored in arrival order, then each handled in a task of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.core import ChatCore
from bot.messages import Incoming
from memory import is_outage

logger = logging.getLogger(__name__)

Handle = Callable[[Incoming, int | None], Awaitable[None]]
Apologise = Callable[[Incoming], Awaitable[None]]
OUTAGE_FIRST = 0.5
OUTAGE_MAX = 2.0  # the bot answers again within about 2 s of the database's return


class Intake:
    """Messages in arrival order: each is written to the inbox, then handled in a task of its own.

    :meth:`put` queues a message and returns a future that is done once it is stored (True) or
    shutdown came first and it was not (False): Telegram awaits it before confirming an update,
    Discord's gateway does not wait. Handling tasks start in arrival order, which keeps each
    conversation's order (the core takes each message's place in its conversation's line before
    its first await). The intake never dies: while the database is unavailable it waits with
    backoff and then stores the message it holds; a message that cannot be stored for a reason of
    its own is logged by its id, answered with an apology, and passed over.
    """

    def __init__(self, core: ChatCore, handle: Handle, apologise: Apologise) -> None:
        self.core = core
        self._handle = handle
        self._apologise = apologise
        self._queue: asyncio.Queue[tuple[Incoming, asyncio.Future[bool]] | None] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    def start(self) -> None:
        self._consumer = asyncio.create_task(self._run(), name="intake")

    def put(self, incoming: Incoming) -> asyncio.Future[bool]:
        stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((incoming, stored))
        return stored

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            incoming, stored = item
            try:
                outcome = await self._take(incoming)
            except Exception:
                logger.exception(
                    "could not take an incoming %s message %s", incoming.platform, incoming.message_id
                )
                outcome = True  # passed over: the platform may confirm it
            if not stored.done():
                stored.set_result(outcome)

    async def _take(self, incoming: Incoming) -> bool:
        stored = await self._store(incoming)
        if stored is None:
            return False
        new, inbox_id = stored
        if new:
            task = asyncio.create_task(self._handled(incoming, inbox_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif new is None:
            await _best_effort(self._apologise, incoming)
        return True

    async def _store(self, incoming: Incoming) -> tuple[bool | None, int | None] | None:
        """(new, inbox id); new is None for a message that cannot be stored; None when closing."""
        delay = OUTAGE_FIRST
        while True:
            try:
                result = await self.core.accept(incoming)
                if incoming.platform in self.core.waiting_for_database:
                    logger.info("the database is back; the %s intake resumes", incoming.platform)
                    self.core.waiting_for_database.discard(incoming.platform)
                return result
            except Exception as exc:
                if not is_outage(exc):
                    logger.error(
                        "%s message %s cannot be stored (%s); it is answered with an apology and skipped",
                        incoming.platform,
                        incoming.message_id,
                        exc.__class__.__name__,
                    )
                    return None, None
                self.core.waiting_for_database.add(incoming.platform)
                logger.warning(
                    "the database is unavailable (%s); the %s intake waits %.1f s and tries again",
                    _first_line(exc),
                    incoming.platform,
                    delay,
                )
            if await self._closed_within(delay):
                return None
            delay = min(delay * 2, OUTAGE_MAX)

    async def _closed_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _handled(self, incoming: Incoming, inbox_id: int | None) -> None:
        """Handle a stored message; after a database outage mid-way, wait and handle it again."""
        delay = OUTAGE_FIRST
        while True:
            try:
                await self._handle(incoming, inbox_id)
                return
            except Exception as exc:
                if not is_outage(exc) or inbox_id is None:
                    logger.exception(
                        "handling a message failed; it stays pending and is answered after a restart"
                    )
                    return
                logger.warning("the database went away while answering (%s); retrying", _first_line(exc))
            if await self._closed_within(delay):
                return
            delay = min(delay * 2, OUTAGE_MAX)
            try:
                await self.core.discard_attempt(inbox_id)  # what the failed attempt stored
            except Exception as exc:
                if not is_outage(exc):
                    raise

    def close(self) -> None:
        """Shutdown: stores waiting out a database outage give up (their messages were never stored)."""
        self._closing.set()

    async def stop(self) -> None:
        """Store what has arrived, then stop (never cancelled mid-write: that can wedge the driver)."""
        self.close()
        if self._consumer is not None:
            self._queue.put_nowait(None)
            await asyncio.wait({self._consumer})


async def _best_effort(apologise: Apologise, incoming: Incoming) -> None:
    try:
        await apologise(incoming)
    except Exception as exc:
        logger.warning(
            "could not send the apology for %s message %s (%s)",
            incoming.platform,
            incoming.message_id,
            exc.__class__.__name__,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__
