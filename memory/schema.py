"""Tables. Changes to them go through a new Alembic revision in memory/migrations/versions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    """One person in one chat on one platform: what a person says in a DM never enters a group's context."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "user_id", name="uq_conversation_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Turn(Base):
    """One message. ``excluded``: left the context through /reset. ``blocked``: stopped by safety."""

    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_conversation_id_id", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(8))  # "user" or "bot"
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    inbox_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class InboxMessage(Base):
    """A platform message as accepted, written before it is processed.

    ``status``: pending (accepted, not answered yet), answered, or missed (found pending at a start
    after too long, and told so). The unique key makes a redelivered message a no-op.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("platform", "chat_id", "message_id", name="uq_inbox_platform_message"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[str] = mapped_column(String(128))
    is_private: Mapped[bool] = mapped_column(Boolean)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    # The daemon that accepted it (its instance id); another may recover it only once that daemon
    # is gone (memory.locks: its instance lock is free).
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)


class FactRow(Base):
    """A fact a person stated about themselves (memory.facts), kept per conversation like its turns.

    ``key``: a newer fact with the same key replaces this one. ``turn_id``: the turn it was found in.
    """

    __tablename__ = "facts"
    __table_args__ = (UniqueConstraint("conversation_id", "key", name="uq_fact_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    slot: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(160))
    text: Mapped[str] = mapped_column(Text)
    turn_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Person(Base):
    """A person's own settings on a platform: ``remember`` is false after /memory off."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("platform", "user_id", name="uq_person_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128))
    remember: Mapped[bool] = mapped_column(Boolean, default=True)
