"""What every platform adapter shares: splitting long replies, typing, retries, who to answer."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from bot.config import PlatformConfig
from bot.core import ChatCore
from bot.messages import Incoming
from memory import is_outage

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_reply(text: str, limit: int) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters, in order.

    Parts end at a sentence boundary when one fits, else at a word boundary; a single word longer
    than the limit (a URL, say) is the only thing ever cut inside a word.
    """
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        window = text[: limit + 1]
        sentence = max((m.start() for m in _SENTENCE_END.finditer(window)), default=-1)
        # A sentence boundary in the second half of the window, else the last word boundary.
        cut = sentence if sentence >= limit // 2 else max(window.rfind(c) for c in " \n\t")
        if cut <= 0:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


@asynccontextmanager
async def typing(send: Callable[[], Awaitable[object]], every: float) -> AsyncIterator[None]:
    """Show "typing" now and every ``every`` seconds until the block exits."""

    async def refresh() -> None:
        while True:
            try:
                await send()
            except Exception as exc:  # typing is cosmetic: never let it break a reply
                logger.debug("typing indicator failed: %s", exc.__class__.__name__)
            await asyncio.sleep(every)

    task = asyncio.create_task(refresh())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    retry_after: Callable[[BaseException], float | None],
    attempts: int = 5,
    base_delay: float = 0.5,
) -> T:
    """Run ``call``, retrying platform errors with backoff (or the delay a 429 asks for).

    ``retry_after`` says how long to wait for an error, or None when it must not be retried.
    The last error is raised to the caller, who logs it: a reply is never dropped silently.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            wait = retry_after(exc)
            if wait is None or attempt == attempts:
                raise
            wait = max(wait, base_delay * 2 ** (attempt - 1))
            logger.warning(
                "%s failed (%s), retry %d/%d in %.1f s",
                what,
                exc.__class__.__name__,
                attempt,
                attempts - 1,
                wait,
            )
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


Handle = Callable[[int | None], Awaitable[None]]
Apologise = Callable[[], Awaitable[None]]
OUTAGE_FIRST = 0.5
OUTAGE_MAX = 2.0  # the bot answers again within about 2 s of the database's return


class Intake:
    """Messages in arrival order: each is written to the inbox, then handled in a task of its own.

    Handling tasks start in arrival order, which keeps each conversation's order (the core takes
    each message's place in its conversation's line before its first await). The intake never
    dies: while the database is unavailable it waits with backoff and then stores the message it
    holds; a message that cannot be stored for a reason of its own is logged by its id, answered
    with an apology, and passed over.
    """

    def __init__(self, core: ChatCore) -> None:
        self.core = core
        self._queue: asyncio.Queue[tuple[Incoming, Handle, Apologise] | None] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    def start(self) -> None:
        self._consumer = asyncio.create_task(self._run(), name="intake")

    def put(self, incoming: Incoming, handle: Handle, apologise: Apologise) -> None:
        self._queue.put_nowait((incoming, handle, apologise))

    async def accept_then_spawn(self, incoming: Incoming, handle: Handle, apologise: Apologise) -> bool:
        """Persist ``incoming`` and start handling it. False when shutdown came first (not stored)."""
        stored = await self._store(incoming)
        if stored is None:
            return False
        new, inbox_id = stored
        if new:
            task = asyncio.create_task(self._handled(handle, inbox_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif new is None:
            await _best_effort(apologise, incoming)
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

    async def _handled(self, handle: Handle, inbox_id: int | None) -> None:
        """Handle a stored message; after a database outage mid-way, wait and handle it again."""
        delay = OUTAGE_FIRST
        while True:
            try:
                await handle(inbox_id)
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

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            incoming, handle, apologise = item
            try:
                await self.accept_then_spawn(incoming, handle, apologise)
            except Exception:
                logger.exception(
                    "could not take an incoming %s message %s", incoming.platform, incoming.message_id
                )

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
        await apologise()
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


def admitted(config: PlatformConfig, *, user_id: str, chat_id: str) -> bool:
    """The allow and block lists: a block always wins; a non-empty allow list admits only its ids."""
    if user_id in config.block_users or chat_id in config.block_chats:
        return False
    if config.allow_users and user_id not in config.allow_users:
        return False
    return not (config.allow_chats and chat_id not in config.allow_chats)


def strip_prefix(text: str, prefix: str | None) -> str | None:
    """The text after the command prefix, or None when it does not start with it."""
    if prefix and text.startswith(prefix):
        return text[len(prefix) :].strip()
    return None
