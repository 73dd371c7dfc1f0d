"""Locks between daemons that share one PostgreSQL: advisory locks, each held on a connection of its
own, outside any transaction (so no session stays open while the model works: the connection
holds a lock and runs nothing else). A daemon that dies loses its connections, and with them its
locks, at once.

* The instance lock: a daemon holds it for its lifetime under its instance id. A message it
  accepted (``inbox.owner``) may be recovered by another daemon only once that lock is free.
* A conversation lock: held while one message of the conversation is answered, so the messages
  of one conversation are answered one at a time whichever daemon took them.

On SQLite (one daemon per database file) there is nothing to lock across processes: both are
no-ops, and every unanswered message is this daemon's to recover.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from memory.store import ConversationKey

logger = logging.getLogger(__name__)

CONNECTIONS = 16  # conversation locks held at once per daemon; more wait for a connection
_LOCK = text("SELECT pg_advisory_lock(hashtextextended(:name, 0))")
_TRY = text("SELECT pg_try_advisory_lock(hashtextextended(:name, 0))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(:name, 0))")


async def _discard(connection: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await connection.invalidate()
        await connection.close()


def _instance(owner: str) -> str:
    return f"blenderd:instance:{owner}"


def _conversation(platform: str, chat_id: str, user_id: str) -> str:  # \x1f: no id holds it
    return f"blenderd:conversation:{platform}\x1f{chat_id}\x1f{user_id}"


class Locks:
    def __init__(self, url: URL) -> None:
        self.shared = url.get_backend_name() == "postgresql"
        self._engine: AsyncEngine | None = None
        if self.shared:
            self._engine = create_async_engine(
                url, pool_size=CONNECTIONS, max_overflow=0, pool_pre_ping=True, isolation_level="AUTOCOMMIT"
            )
        self._instance: AsyncConnection | None = None

    async def hold_instance(self, owner: str) -> None:
        """Hold this daemon's instance lock until :meth:`close`."""
        if self._engine is None or self._instance is not None:
            return
        self._instance = await self._engine.connect()
        await self._instance.execute(_LOCK, {"name": _instance(owner)})

    @contextlib.asynccontextmanager
    async def claiming(self, owner: str) -> AsyncIterator[bool]:
        """Whether the daemon ``owner`` is gone (its instance lock was free, and is now held by this
        block, so no other daemon claims its messages at the same time)."""
        if self._engine is None:
            yield True
            return
        async with self._engine.connect() as connection:
            got = bool(await connection.scalar(_TRY, {"name": _instance(owner)}))
            try:
                yield got
            finally:
                if got:
                    await connection.execute(_UNLOCK, {"name": _instance(owner)})

    @contextlib.asynccontextmanager
    async def conversation(self, key: ConversationKey) -> AsyncIterator[None]:
        """Hold the conversation's lock for the block (waiting, in the server, for a daemon that
        holds it). A wait or an unlock cut short (shutdown) closes the connection, which frees
        whatever it held; the connection never goes back to the pool half-way."""
        if self._engine is None:
            yield
            return
        name = {"name": _conversation(key.platform, key.chat_id, key.user_id)}
        connection = await self._engine.connect()
        try:
            await connection.execute(_LOCK, name)
        except BaseException:
            await _discard(connection)
            raise
        try:
            yield
        finally:
            try:
                await connection.execute(_UNLOCK, name)
                await connection.close()
            except BaseException:
                await _discard(connection)
                raise

    async def close(self) -> None:
        if self._instance is not None:
            with contextlib.suppress(Exception):
                await self._instance.close()
            self._instance = None
        if self._engine is not None:
            await self._engine.dispose()
