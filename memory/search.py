"""One statement that reads everything a model input is built from.

For a conversation and the person's new message: the newest turns that may enter a context (as
:meth:`memory.MemoryStore.context_turns`), the conversation's facts, and the newest older turns
that share a word with the message (at most ``SCAN``; :func:`memory.recall.rank` keeps those
that share two), found with SQLite FTS5 (``turns_fts``) or PostgreSQL full-text search
(``turns.search``, through its GIN index). One round trip instead of four: on a 2-core machine
each costs about 0.6 ms through the async drivers. Newest-first keeps the search cheap at any
history length (about 1 ms at 10,000 turns on either database, where ranking every match by
bm25/ts_rank costs 1-3 ms).

Rows come back tagged: ``kind`` 0 a recent turn, 1 a fact, 2 a found older turn. A person who
sent ``/memory off`` gets recent turns only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Integer, Text, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from memory.engine import aware
from memory.recall import FoundTurn, StoredFact
from memory.store import ConversationKey, StoredTurn, recent_turns

SCAN = 64  # the newest matches taken, before the window and the flags are applied
FOUND = 8  # found older turns kept, newest first

_WINDOW_START = (  # the first turn of the recent window: only older ones are searched
    "COALESCE((SELECT min(id) FROM (SELECT id FROM turns WHERE conversation_id = {conversation} "
    "AND NOT excluded AND NOT blocked ORDER BY id DESC LIMIT :window) AS recent), 9223372036854775807)"
)
_KEY = (  # the conversation's id, and whether the person lets the bot remember (no row: yes)
    "SELECT conversations.id AS id, COALESCE(people.remember, {true}) AS remember FROM conversations "
    "LEFT JOIN people ON people.platform = conversations.platform AND people.user_id = conversations.user_id "
    "WHERE conversations.platform = :platform AND conversations.chat_id = :chat_id "
    "AND conversations.user_id = :user_id"
)
_FACT_SOURCE = "(SELECT turns.text FROM turns WHERE turns.id = f.turn_id)"

_SQLITE = (
    f"WITH c AS ({_KEY.format(true=1)}), "
    "recent AS (SELECT turns.id, turns.role, turns.text, turns.created_at FROM turns "
    "WHERE turns.conversation_id = (SELECT id FROM c) AND NOT turns.excluded AND NOT turns.blocked "
    "ORDER BY turns.id DESC LIMIT :window) "
    "SELECT 0 AS kind, id, role AS label, text, created_at, NULL AS source, NULL AS turn_id FROM recent "
    f"UNION ALL SELECT 1, f.id, f.slot, f.text, NULL, {_FACT_SOURCE}, f.turn_id FROM facts AS f "
    "JOIN c ON f.conversation_id = c.id AND c.remember"
)
_SQLITE_MATCH = "'conversation : \"c' || COALESCE((SELECT id FROM c), 0) || '\" AND (' || :query || ')'"
_SQLITE_FOUND = (
    " UNION ALL SELECT 2, t.id, NULL, t.text, NULL, NULL, NULL FROM (SELECT rowid FROM turns_fts "
    f"WHERE turns_fts MATCH {_SQLITE_MATCH} ORDER BY rowid DESC LIMIT :scan) AS r "
    "JOIN turns AS t ON t.id = r.rowid WHERE (SELECT remember FROM c) "
    "AND t.id < COALESCE((SELECT min(id) FROM recent), 9223372036854775807) "
    "AND NOT t.excluded AND NOT t.blocked"
)
_POSTGRES_FACTS = text(
    f"WITH c AS ({_KEY.format(true='true')}) SELECT c.id, c.remember, f.id, f.slot, f.text, "
    f"{_FACT_SOURCE}, f.turn_id FROM c LEFT JOIN facts AS f ON f.conversation_id = c.id AND c.remember"
)
_POSTGRES_FOUND = text(  # to_tsquery inline (not a FROM item), so the GIN index can serve it
    "SELECT id, text FROM (SELECT id, text, excluded, blocked FROM turns "
    "WHERE conversation_id = :conversation AND search @@ to_tsquery('english', :query) "
    "ORDER BY id DESC LIMIT :scan) AS m "
    f"WHERE id < {_WINDOW_START.format(conversation=':conversation')} AND NOT excluded AND NOT blocked "
    "ORDER BY id DESC LIMIT :found"
)
_TYPES: dict[str, TypeEngine[Any] | type[TypeEngine[Any]]] = {
    "kind": Integer,
    "id": Integer,
    "label": Text,
    "text": Text,
    "created_at": DateTime(timezone=True),
    "source": Text,
    "turn_id": Integer,
}
_SQLITE_STATEMENTS = {
    False: text(_SQLITE).columns(**_TYPES),
    True: text(_SQLITE + _SQLITE_FOUND).columns(**_TYPES),
}


def any_of(words: Sequence[str], *, postgres: bool) -> str:
    """A full-text query for any of ``words`` (letters and digits only, so nothing needs escaping)."""
    return " | ".join(words) if postgres else " OR ".join(f'"{word}"' for word in words)


@dataclass(frozen=True)
class Material:
    history: list[StoredTurn]  # oldest first
    facts: list[StoredFact]
    found: list[FoundTurn]  # newest first


async def read_material(
    session: AsyncSession,
    key: ConversationKey,
    words: Sequence[str],
    *,
    window: int,
    postgres: bool,
) -> Material:
    """The recent turns, the facts and (when ``words``) the matching older turns."""
    params: dict[str, object] = {
        "platform": key.platform,
        "chat_id": key.chat_id,
        "user_id": key.user_id,
        "window": window,
    }
    if postgres:
        return await _postgres(session, params, words, window)
    if words:
        params.update(query=any_of(words, postgres=False), scan=SCAN)
    rows = (await session.execute(_SQLITE_STATEMENTS[bool(words)], params)).all()
    recent: list[tuple[int, StoredTurn]] = []
    facts: list[StoredFact] = []
    found: list[FoundTurn] = []
    for kind, id_, label, text_, created_at, source, turn_id in rows:
        if kind == 0:
            recent.append((id_, StoredTurn(label, text_, aware(created_at))))
        elif kind == 1:
            facts.append(StoredFact(id_, label, text_, source, turn_id or 0))
        else:
            found.append(FoundTurn(id_, text_))
    recent.sort(key=lambda pair: pair[0])
    found.sort(key=lambda turn: -turn.id)
    return Material([turn for _, turn in recent], facts, found[:FOUND])


async def _postgres(
    session: AsyncSession, params: dict[str, object], words: Sequence[str], window: int
) -> Material:
    rows: Sequence[Any] = (await session.execute(_POSTGRES_FACTS, params)).all()
    if not rows:
        return Material([], [], [])
    conversation, remembers = rows[0][0], rows[0][1]
    history = await recent_turns(session, conversation, window)
    facts = [
        StoredFact(fact_id, slot, text_, source, turn_id or 0)
        for _, _, fact_id, slot, text_, source, turn_id in rows
        if fact_id is not None
    ]
    found: list[FoundTurn] = []
    if words and remembers:
        search = {
            "conversation": conversation,
            "query": any_of(words, postgres=True),
            "scan": SCAN,
            "window": window,
            "found": FOUND,
        }
        found = [FoundTurn(i, t) for i, t in (await session.execute(_POSTGRES_FOUND, search)).all()]
    return Material(history, facts, found)
