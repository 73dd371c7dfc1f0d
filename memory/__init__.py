"""Persistent per-conversation memory: SQLAlchemy 2 async on SQLite (default) or PostgreSQL."""

from __future__ import annotations

from memory.store import (
    ConversationKey,
    MemoryStore,
    MemoryStoreError,
    PendingMessage,
    StoredTurn,
    is_outage,
)

__all__ = ["ConversationKey", "MemoryStore", "MemoryStoreError", "PendingMessage", "StoredTurn", "is_outage"]
