"""The inbox table: each platform message written down as it arrives, settled once answered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory.engine import aware, runs_to_end
from memory.schema import InboxMessage, Turn

if TYPE_CHECKING:
    from memory.locks import Locks
    from memory.store import ConversationKey


@dataclass(frozen=True)
class PendingMessage:
    inbox_id: int
    platform: str
    chat_id: str
    user_id: str
    message_id: str
    is_private: bool
    text: str | None
    received_at: datetime


class InboxRows:
    """The inbox's operations, part of :class:`memory.store.MemoryStore` (its sessions)."""

    _sessions: async_sessionmaker[AsyncSession]
    _reading: async_sessionmaker[AsyncSession]
    _running: set[asyncio.Future[Any]]
    owner: str  # this daemon's instance id (memory.locks)
    locks: Locks

    @runs_to_end
    async def accept(
        self, key: ConversationKey, message_id: str, text_: str | None, *, is_private: bool
    ) -> int | None:
        """Record a platform message before processing it; None when it was seen before."""
        try:
            async with self._sessions.begin() as session:
                row = InboxMessage(
                    platform=key.platform,
                    chat_id=key.chat_id,
                    user_id=key.user_id,
                    message_id=message_id,
                    is_private=is_private,
                    text=text_,
                    status="pending",
                    owner=self.owner,
                )
                session.add(row)
                await session.flush()
                return row.id
        except IntegrityError:
            return None

    @runs_to_end
    async def settle(self, inbox_id: int, status: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(InboxMessage).where(InboxMessage.id == inbox_id).values(status=status)
            )

    @runs_to_end
    async def pending(self, platform: str) -> list[PendingMessage]:
        """Messages accepted but never answered because their daemon died, oldest first: this
        daemon's, and those of daemons that are gone (claimed now, so no other daemon recovers
        them too). Messages of a daemon still running are its own business."""
        waiting = (InboxMessage.platform == platform) & (InboxMessage.status == "pending")
        async with self._reading() as session:
            owners = set((await session.scalars(select(InboxMessage.owner).where(waiting).distinct())).all())
        for owner in sorted(o for o in owners if o is not None and o != self.owner):
            async with self.locks.claiming(owner) as gone:
                if gone:
                    async with self._sessions.begin() as session:
                        await session.execute(
                            update(InboxMessage)
                            .where(waiting & (InboxMessage.owner == owner))
                            .values(owner=self.owner)
                        )
        mine = (InboxMessage.owner == self.owner) | InboxMessage.owner.is_(None)
        async with self._reading() as session:
            rows = (
                await session.scalars(select(InboxMessage).where(waiting & mine).order_by(InboxMessage.id))
            ).all()
            return [_pending(r) for r in rows]

    @runs_to_end
    async def pending_before(self, key: ConversationKey, inbox_id: int) -> list[PendingMessage]:
        """The conversation's messages accepted before ``inbox_id`` (by any daemon) and not
        answered yet, oldest first."""
        async with self._reading() as session:
            rows = (
                await session.scalars(
                    select(InboxMessage)
                    .where(
                        InboxMessage.platform == key.platform,
                        InboxMessage.chat_id == key.chat_id,
                        InboxMessage.user_id == key.user_id,
                        InboxMessage.status == "pending",
                        InboxMessage.id < inbox_id,
                    )
                    .order_by(InboxMessage.id)
                )
            ).all()
            return [_pending(r) for r in rows]

    @runs_to_end
    async def is_pending(self, inbox_id: int) -> bool:
        async with self._reading() as session:
            status = await session.scalar(select(InboxMessage.status).where(InboxMessage.id == inbox_id))
            return status == "pending"

    @runs_to_end
    async def drop_turns_of(self, inbox_id: int) -> None:
        """Remove turns a crashed attempt stored for this message, before it is processed again."""
        async with self._sessions.begin() as session:
            await session.execute(delete(Turn).where(Turn.inbox_id == inbox_id))


def _pending(r: InboxMessage) -> PendingMessage:
    return PendingMessage(
        r.id, r.platform, r.chat_id, r.user_id, r.message_id, r.is_private, r.text, aware(r.received_at)
    )
