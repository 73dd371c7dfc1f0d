"""Long-term memory in the database: facts a person stated, and a full-text search of their older turns.

Facts are kept per conversation, like turns: what someone said in a DM never enters a group's
context. Older turns are searched with SQLite FTS5 (``turns_fts``, Porter stemming) or PostgreSQL
full-text search (``turns.search``, English configuration), both made by migration 0003. A person
who sent ``/memory off`` has nothing learned and nothing recalled until ``/memory on``.

Like :class:`memory.MemoryStore`, every method opens a short session and runs to its end.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from memory.engine import runs_to_end
from memory.facts import Fact, extract
from memory.recall import Remembered, rank, search_words
from memory.schema import Conversation, FactRow, Person
from memory.search import read_material
from memory.store import ConversationKey, StoredTurn, find_conversation

if TYPE_CHECKING:
    from memory.store import MemoryStore

MAX_FACTS = 200  # per conversation: the oldest go first beyond this


class LongTermMemory:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._sessions = store.sessions
        self._reading = store.reading
        self._postgres = store.backend == "postgresql"
        self._running: set[asyncio.Future[Any]] = store.running  # MemoryStore.close waits for these too

    @runs_to_end
    async def gather(
        self, key: ConversationKey, probe: str, *, window: int, search: bool = True
    ) -> tuple[list[StoredTurn], list[Remembered]]:
        """What a model input for ``probe`` (the person's new message) is built from: the newest
        ``window`` turns (as :meth:`MemoryStore.context_turns`) and the relevant remembered
        material, most relevant first. Facts come from any turn; only turns older than the window
        are searched (unless ``search`` is false)."""
        words = search_words(probe) if search else []
        async with self._reading() as session:
            material = await read_material(session, key, words, window=window, postgres=self._postgres)
        return material.history, rank(probe, material.facts, material.found)

    async def recall(
        self, key: ConversationKey, probe: str, *, window: int, search: bool = True
    ) -> list[Remembered]:
        """The remembered material relevant to ``probe``, as :meth:`gather` finds it."""
        return (await self.gather(key, probe, window=window, search=search))[1]

    @runs_to_end
    async def learn(self, key: ConversationKey, turn_id: int, message: str) -> list[Fact]:
        """Store the facts ``message`` (the person's turn ``turn_id``, already stored) states; a fact
        replaces an older one with the same key. Returns what was stored."""
        facts = extract(message)
        if not facts:
            return []
        async with self._sessions.begin() as session:
            found = (await session.execute(_key_query(key))).first()
            if found is None or found[1] is False:  # no conversation, or /memory off
                return []
            conversation = found[0]
            keys = [fact.key for fact in facts]
            existing = {
                row.key: row
                for row in await session.scalars(
                    select(FactRow).where(FactRow.conversation_id == conversation, FactRow.key.in_(keys))
                )
            }
            now = datetime.now(UTC)
            for fact in facts:
                row = existing.get(fact.key)
                if row is None:
                    row = FactRow(conversation_id=conversation, key=fact.key)
                    session.add(row)
                row.slot, row.text, row.turn_id, row.updated_at = fact.slot, fact.text, turn_id, now
            if len(existing) < len(facts):  # new rows: keep the newest MAX_FACTS
                await session.flush()
                kept = (
                    select(FactRow.id)
                    .where(FactRow.conversation_id == conversation)
                    .order_by(FactRow.updated_at.desc(), FactRow.id.desc())
                    .limit(MAX_FACTS)
                )
                await session.execute(
                    delete(FactRow).where(FactRow.conversation_id == conversation, FactRow.id.not_in(kept))
                )
        return facts

    @runs_to_end
    async def facts(self, key: ConversationKey) -> list[str]:
        """What is remembered in this conversation, in the order it was first learned."""
        async with self._reading() as session:
            conversation = await find_conversation(session, key, create=False)
            if conversation is None:
                return []
            rows = await session.scalars(
                select(FactRow.text).where(FactRow.conversation_id == conversation).order_by(FactRow.id)
            )
            return list(rows.all())

    @runs_to_end
    async def forget_fact(self, key: ConversationKey, number: int) -> str | None:
        """Delete the ``number``-th fact (from 1) as :meth:`facts` lists them; its text, or None."""
        async with self._sessions.begin() as session:
            conversation = await find_conversation(session, key, create=False)
            if conversation is None or number < 1:
                return None
            row = await session.scalar(
                select(FactRow)
                .where(FactRow.conversation_id == conversation)
                .order_by(FactRow.id)
                .offset(number - 1)
                .limit(1)
            )
            if row is None:
                return None
            await session.delete(row)
            return row.text

    @runs_to_end
    async def remembers(self, platform: str, user_id: str) -> bool:
        async with self._reading() as session:
            return await _remembers(session, platform, user_id)

    @runs_to_end
    async def set_remember(self, platform: str, user_id: str, remember: bool) -> None:
        """The person's /memory on or off."""
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(Person).where(Person.platform == platform, Person.user_id == user_id)
            )
            if row is None:
                session.add(Person(platform=platform, user_id=user_id, remember=remember))
            else:
                row.remember = remember


def _key_query(key: ConversationKey) -> Select[int, bool]:
    """The conversation's id and the person's ``remember`` (None: never set, so on)."""
    return (
        select(Conversation.id, Person.remember)
        .outerjoin(
            Person, (Person.platform == Conversation.platform) & (Person.user_id == Conversation.user_id)
        )
        .where(
            Conversation.platform == key.platform,
            Conversation.chat_id == key.chat_id,
            Conversation.user_id == key.user_id,
        )
    )


async def _remembers(session: AsyncSession, platform: str, user_id: str) -> bool:
    remember = await session.scalar(
        select(Person.remember).where(Person.platform == platform, Person.user_id == user_id)
    )
    return remember is not False
