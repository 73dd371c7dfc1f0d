"""What every platform adapter shares: the intake, sending (split, retries, backoff), typing, who to answer.

A platform adapter is a :class:`PlatformAdapter`: it turns platform events into
:class:`~bot.messages.Incoming` messages and puts them into its :class:`Intake`, and says how to
answer one (:meth:`PlatformAdapter.deliver_to`, used alike for live and recovered messages) and
how to show "typing". Everything between is the core's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

from adapters.intake import Intake
from bot.core import ChatCore, Deliver
from bot.messages import Attachment, Incoming, Reply
from bot.platform_sections import PlatformConfig
from bot.replies import UNSTORABLE

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


async def send_reply(
    reply: Reply,
    *,
    limit: int,
    send_text: Callable[[str, bool], Awaitable[object]],
    send_file: Callable[[Attachment], Awaitable[object]],
    what: str,
    retry_after: Callable[[BaseException], float | None],
) -> None:
    """Send ``reply``: its attachment (with the text), else its text in parts of at most ``limit``
    characters, in order (``send_text(part, first)``), each retried as :func:`with_retries` does.
    Raises the last error when a part cannot be sent: the caller keeps the message pending."""
    try:
        if reply.attachment is not None:
            attachment = reply.attachment
            await with_retries(lambda: send_file(attachment), what=what, retry_after=retry_after)
            return
        for i, part in enumerate(split_reply(reply.text, limit)):
            await with_retries(functools.partial(send_text, part, i == 0), what=what, retry_after=retry_after)
    except Exception as exc:
        logger.error("%s: a reply could not be delivered after retries (%s)", what, exc.__class__.__name__)
        raise


class PlatformAdapter(ABC):
    """The half of a platform adapter that every platform shares: handling what its intake stored
    (typing while the core answers) and the apology for a message that cannot be stored."""

    name: str
    typing_every: float  # seconds between "typing" indicators (the platform shows one a while)

    def __init__(self, core: ChatCore) -> None:
        self.core = core
        self.intake = Intake(core, self._handle, self._apologise)

    @property
    def username(self) -> str | None:
        """The bot's @name where commands may name it (``/help@name``)."""
        return None

    @abstractmethod
    def deliver_to(self, message: Incoming) -> Deliver:
        """How to send the reply to ``message`` (a live one or one recovered after a crash)."""

    @abstractmethod
    async def show_typing(self, message: Incoming) -> None:
        """Show "typing" in the conversation of ``message`` once."""

    async def _handle(self, incoming: Incoming, inbox_id: int | None) -> None:
        async with typing(lambda: self.show_typing(incoming), self.typing_every):
            await self.core.handle(
                incoming, bot_username=self.username, deliver=self.deliver_to(incoming), accepted=inbox_id
            )

    async def _apologise(self, incoming: Incoming) -> None:
        await self.deliver_to(incoming)(Reply(UNSTORABLE))


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
