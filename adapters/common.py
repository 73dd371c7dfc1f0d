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


class Intake:
    """Messages in arrival order: each is written to the inbox, then handled in a task of its own.

    Handling tasks start in arrival order, which keeps each conversation's order (the core takes
    its per-conversation lock before its first await).
    """

    def __init__(self, core: ChatCore) -> None:
        self.core = core
        self._queue: asyncio.Queue[tuple[Incoming, Callable[[int | None], Awaitable[None]]] | None] = (
            asyncio.Queue()
        )
        self._consumer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._consumer = asyncio.create_task(self._run(), name="intake")

    def put(self, incoming: Incoming, handle: Callable[[int | None], Awaitable[None]]) -> None:
        self._queue.put_nowait((incoming, handle))

    async def accept_then_spawn(
        self, incoming: Incoming, handle: Callable[[int | None], Awaitable[None]]
    ) -> None:
        """Persist ``incoming`` now and start handling it; a redelivered message is dropped."""
        new, inbox_id = await self.core.accept(incoming)
        if new:
            task = asyncio.create_task(_logged(handle(inbox_id)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        while (item := await self._queue.get()) is not None:
            incoming, handle = item
            try:
                await self.accept_then_spawn(incoming, handle)
            except Exception:
                logger.exception("could not store an incoming %s message", incoming.platform)

    async def stop(self) -> None:
        """Store what has arrived, then stop (never cancelled mid-write: that can wedge the driver)."""
        if self._consumer is not None:
            self._queue.put_nowait(None)
            await asyncio.wait({self._consumer})


async def _logged(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception:
        logger.exception("handling a message failed; it stays pending and is answered after a restart")


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
