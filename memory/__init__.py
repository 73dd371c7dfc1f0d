"""Persistent per-conversation memory: SQLAlchemy 2 async on SQLite (default) or PostgreSQL."""

from __future__ import annotations

from memory.engine import MemoryStoreError, is_outage
from memory.inbox_rows import PendingMessage
from memory.store import ConversationKey, MemoryStore, StoredTurn

__all__ = ["ConversationKey", "MemoryStore", "MemoryStoreError", "PendingMessage", "StoredTurn", "is_outage"]
