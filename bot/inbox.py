"""The inbox: a platform message is written down as it arrives, before the platform is told it was
received, and settled once its reply is out; the ones never settled (a crash) are recovered.

A message is recovered at most once per start; a reply in flight when the process died may be
sent twice (at most one per conversation per kill, docs/reliability.md).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.messages import Incoming
from memory import ConversationKey, MemoryStore, PendingMessage

logger = logging.getLogger(__name__)

Outcome = Literal["answered", "missed", "ignored"]


def key_of(message: Incoming) -> ConversationKey:
    return ConversationKey(message.platform, message.chat_id, message.user_id)


@dataclass(frozen=True)
class Unanswered:
    """A message accepted by an earlier run of the daemon and never settled."""

    inbox_id: int
    message: Incoming
    received_at: datetime

    def age(self) -> float:
        """Seconds since it arrived."""
        return (datetime.now(UTC) - self.received_at).total_seconds()


class Inbox:
    def __init__(self, memory: MemoryStore) -> None:
        self._memory = memory

    async def accept(self, message: Incoming) -> tuple[bool, int | None]:
        """Write ``message`` down as it arrives: (new, inbox id). A message without a platform id
        (web, console) is not kept; one seen before (a redelivery) is not new."""
        if message.message_id is None:
            return True, None
        inbox_id = await self._memory.accept(
            key_of(message), message.message_id, message.text, is_private=message.is_private
        )
        if inbox_id is None:
            logger.info("a redelivered %s message was accepted before; not answered again", message.platform)
        return inbox_id is not None, inbox_id

    async def settle(self, inbox_id: int | None, outcome: Outcome) -> None:
        if inbox_id is not None:
            await self._memory.settle(inbox_id, outcome)

    async def discard_attempt(self, inbox_id: int) -> None:
        """Remove what a failed attempt at answering stored, before it is answered again."""
        await self._memory.drop_turns_of(inbox_id)

    async def unanswered(self, platform: str) -> dict[ConversationKey, list[Unanswered]]:
        """The messages of ``platform`` never settled, by conversation, oldest first."""
        found: dict[ConversationKey, list[Unanswered]] = defaultdict(list)
        for row in await self._memory.pending(platform):
            item = _unanswered(row)
            found[key_of(item.message)].append(item)
        return found

    async def earlier(self, key: ConversationKey, inbox_id: int) -> list[Unanswered]:
        """The conversation's messages accepted before ``inbox_id``, by any daemon, not answered yet."""
        return [_unanswered(row) for row in await self._memory.pending_before(key, inbox_id)]

    async def is_pending(self, inbox_id: int) -> bool:
        return await self._memory.is_pending(inbox_id)


def _unanswered(row: PendingMessage) -> Unanswered:
    message = Incoming(
        platform=row.platform,
        chat_id=row.chat_id,
        user_id=row.user_id,
        text=row.text,
        message_id=row.message_id,
        is_private=row.is_private,
    )
    return Unanswered(row.inbox_id, message, row.received_at)
