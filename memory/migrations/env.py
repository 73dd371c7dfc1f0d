"""Alembic environment. Migrations run from :meth:`memory.MemoryStore.open` on its own connection."""

from __future__ import annotations

from alembic import context

from memory.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("blenderd applies its migrations itself at start; run the bot instead of alembic")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
