"""The conversation store: conversations, turns, the inbox (:mod:`memory.inbox_rows`), and what a
person may see or delete.

Every method opens a short session and closes it before returning: a session is never held
across an ``await`` on the network or the model. Every operation runs to its end once started
(:func:`memory.engine.runs_to_end`): it is a task of its own that a caller's cancellation
(shutdown) does not reach, because a query cancelled half-way can wedge the driver or leave a
write half-done. :meth:`MemoryStore.close` waits for those still running. How the database is
opened (URLs, SQLite's WAL and locking, migrations) is :mod:`memory.engine`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from memory.engine import READ_ONLY, aware, connect, runs_to_end
from memory.inbox_rows import InboxRows
from memory.locks import Locks
from memory.schema import Conversation, FactRow, InboxMessage, Person, Turn

if TYPE_CHECKING:
    from memory.longterm import LongTermMemory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConversationKey:
    platform: str
    chat_id: str
    user_id: str


@dataclass(frozen=True)
class StoredTurn:
    role: str
    text: str
    created_at: datetime


async def find_conversation(session: AsyncSession, key: ConversationKey, *, create: bool) -> int | None:
    """The id of ``key``'s conversation (created when ``create``), None when it has none."""
    query = select(Conversation.id).where(
        Conversation.platform == key.platform,
        Conversation.chat_id == key.chat_id,
        Conversation.user_id == key.user_id,
    )
    found = await session.scalar(query)
    if found is not None or not create:
        return found
    try:
        async with session.begin_nested():
            row = Conversation(platform=key.platform, chat_id=key.chat_id, user_id=key.user_id)
            session.add(row)
        return row.id
    except IntegrityError:  # created concurrently by another process
        return await session.scalar(query)


async def recent_turns(session: AsyncSession, conversation_id: int, limit: int) -> list[StoredTurn]:
    """The newest ``limit`` turns that may enter a context (not reset, not blocked), oldest first."""
    rows = await session.execute(
        select(Turn.role, Turn.text, Turn.created_at)
        .where(Turn.conversation_id == conversation_id, Turn.excluded.is_(False), Turn.blocked.is_(False))
        .order_by(Turn.id.desc())
        .limit(limit)
    )
    return [StoredTurn(role, text_, created) for role, text_, created in reversed(rows.all())]


class MemoryStore(InboxRows):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._reading = async_sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        self._running: set[asyncio.Future[Any]] = set()
        self.owner = uuid.uuid4().hex[:16]  # this process's instance id, for the inbox's rows
        self.locks = Locks(engine.url)

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    @property
    def reading(self) -> async_sessionmaker[AsyncSession]:
        """Sessions that only read (on SQLite: without the write lock)."""
        return self._reading

    @property
    def running(self) -> set[asyncio.Future[Any]]:
        """The operations in progress (:meth:`close` waits for them)."""
        return self._running

    @functools.cached_property
    def longterm(self) -> LongTermMemory:
        """Facts and the search of older turns, on this store's database."""
        from memory.longterm import LongTermMemory

        return LongTermMemory(self)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> MemoryStore:
        """Connect, apply migrations (unless ``migrate`` is false: then only connect), and return a store."""
        engine = await connect(url, migrate=migrate)
        logger.info("database ready (%s)", engine.url.get_backend_name())
        return cls(engine)

    async def close(self, timeout: float = 10.0) -> None:
        """Let operations in progress finish (up to ``timeout``), then close every connection."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)
        await self.locks.close()
        await self.engine.dispose()

    @runs_to_end
    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    @runs_to_end
    async def add_turn(
        self,
        key: ConversationKey,
        role: str,
        text_: str,
        *,
        blocked: bool = False,
        inbox_id: int | None = None,
    ) -> int:
        async with self._sessions.begin() as session:
            conversation_id = await find_conversation(session, key, create=True)
            turn = Turn(
                conversation_id=conversation_id,
                role=role,
                text=text_,
                blocked=blocked,
                excluded=False,
                inbox_id=inbox_id,
            )
            session.add(turn)
            await session.flush()
            return turn.id

    @runs_to_end
    async def context_turns(self, key: ConversationKey, limit: int = 64) -> list[StoredTurn]:
        """The newest ``limit`` turns that may enter a context (not reset, not blocked), oldest first."""
        async with self._reading() as session:
            conversation_id = await find_conversation(session, key, create=False)
            if conversation_id is None:
                return []
            return await recent_turns(session, conversation_id, limit)

    @runs_to_end
    async def reset(self, key: ConversationKey) -> int:
        """Exclude every earlier turn of this conversation from later contexts, and drop the facts
        found in them."""
        async with self._sessions.begin() as session:
            conversation_id = await find_conversation(session, key, create=False)
            if conversation_id is None:
                return 0
            await session.execute(delete(FactRow).where(FactRow.conversation_id == conversation_id))
            result = await session.execute(
                update(Turn)
                .where(Turn.conversation_id == conversation_id, Turn.excluded.is_(False))
                .values(excluded=True)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    @runs_to_end
    async def forget(self, platform: str, user_id: str) -> int:
        """Delete every conversation, turn and fact of this person on this platform; return turns deleted.

        Their /memory off choice stays, so forgetting never turns remembering back on."""
        async with self._sessions.begin() as session:
            await session.execute(  # answered messages: their ids only served to spot redeliveries
                delete(InboxMessage).where(
                    InboxMessage.platform == platform,
                    InboxMessage.user_id == user_id,
                    InboxMessage.status != "pending",
                )
            )
            ids = select(Conversation.id).where(
                Conversation.platform == platform, Conversation.user_id == user_id
            )
            await session.execute(delete(FactRow).where(FactRow.conversation_id.in_(ids)))
            result = await session.execute(delete(Turn).where(Turn.conversation_id.in_(ids)))
            await session.execute(
                delete(Conversation).where(Conversation.platform == platform, Conversation.user_id == user_id)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    @runs_to_end
    async def export(self, platform: str, user_id: str) -> dict[str, Any]:
        """Everything stored about this person on this platform, as JSON-ready data."""
        async with self._reading() as session:
            conversations = (
                await session.scalars(
                    select(Conversation)
                    .where(Conversation.platform == platform, Conversation.user_id == user_id)
                    .order_by(Conversation.id)
                )
            ).all()
            out = []
            for conversation in conversations:
                turns = (
                    await session.scalars(
                        select(Turn).where(Turn.conversation_id == conversation.id).order_by(Turn.id)
                    )
                ).all()
                facts = (
                    await session.scalars(
                        select(FactRow).where(FactRow.conversation_id == conversation.id).order_by(FactRow.id)
                    )
                ).all()
                out.append(
                    {
                        "chat_id": conversation.chat_id,
                        "started_at": _iso(conversation.created_at),
                        "turns": [
                            {
                                "role": t.role,
                                "text": t.text,
                                "time": _iso(t.created_at),
                                "reset": t.excluded,
                                "blocked": t.blocked,
                            }
                            for t in turns
                        ],
                        "remembered": [
                            {"fact": f.text, "kind": f.slot, "time": _iso(f.updated_at)} for f in facts
                        ],
                    }
                )
            remember = await session.scalar(
                select(Person.remember).where(Person.platform == platform, Person.user_id == user_id)
            )
        return {
            "platform": platform,
            "user_id": user_id,
            "exported_at": _iso(datetime.now(UTC)),
            "memory": "off" if remember is False else "on",
            "conversations": out,
        }

    @runs_to_end
    async def purge_older_than(self, days: int) -> int:
        """Retention: delete turns and facts older than ``days`` days; return how many turns."""
        cutoff = datetime.now(UTC) - timedelta(days=days)
        async with self._sessions.begin() as session:
            await session.execute(delete(FactRow).where(FactRow.updated_at < cutoff))
            result = await session.execute(delete(Turn).where(Turn.created_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)

    @runs_to_end
    async def count_turns(self) -> int:
        async with self._reading() as session:
            return int(await session.scalar(select(func.count()).select_from(Turn)) or 0)

    @runs_to_end
    async def stats(self) -> dict[str, dict[str, int]]:
        """Per platform: people, conversations and stored messages (for ``admin stats``)."""
        async with self._reading() as session:
            people = await session.execute(
                select(Conversation.platform, func.count(func.distinct(Conversation.user_id))).group_by(
                    Conversation.platform
                )
            )
            conversations = await session.execute(
                select(Conversation.platform, func.count()).group_by(Conversation.platform)
            )
            messages = await session.execute(
                select(Conversation.platform, func.count(Turn.id))
                .join(Turn, Turn.conversation_id == Conversation.id)
                .group_by(Conversation.platform)
            )
            out: dict[str, dict[str, int]] = {}
            for column, rows in (
                ("people", people),
                ("conversations", conversations),
                ("messages", messages),
            ):
                for platform, count in rows.all():
                    out.setdefault(platform, {"people": 0, "conversations": 0, "messages": 0})[column] = count
            return dict(sorted(out.items()))


def _iso(moment: datetime) -> str:
    return aware(moment).isoformat()
