"""long-term memory: facts, people's settings, full-text search over user turns

SQLite: an FTS5 table ``turns_fts`` (conversation token + text, Porter stemming) kept by triggers
on ``turns``. PostgreSQL: a stored ``tsvector`` column on ``turns`` (user turns only) with a GIN
index. Both are filled for the turns already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SQLITE_UP = (
    "CREATE VIRTUAL TABLE turns_fts USING fts5(conversation, text, tokenize = 'porter unicode61')",
    "INSERT INTO turns_fts(rowid, conversation, text) "
    "SELECT id, 'c' || conversation_id, text FROM turns WHERE role = 'user'",
    "CREATE TRIGGER turns_fts_insert AFTER INSERT ON turns WHEN new.role = 'user' BEGIN "
    "INSERT INTO turns_fts(rowid, conversation, text) VALUES (new.id, 'c' || new.conversation_id, new.text); "
    "END",
    "CREATE TRIGGER turns_fts_delete AFTER DELETE ON turns WHEN old.role = 'user' BEGIN "
    "DELETE FROM turns_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER turns_fts_update AFTER UPDATE OF text ON turns WHEN new.role = 'user' BEGIN "
    "UPDATE turns_fts SET text = new.text WHERE rowid = new.id; END",
)
_SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS turns_fts_update",
    "DROP TRIGGER IF EXISTS turns_fts_delete",
    "DROP TRIGGER IF EXISTS turns_fts_insert",
    "DROP TABLE IF EXISTS turns_fts",
)
_POSTGRES_UP = (
    "ALTER TABLE turns ADD COLUMN search tsvector GENERATED ALWAYS AS "
    "(CASE WHEN role = 'user' THEN to_tsvector('english', text) END) STORED",
    "CREATE INDEX ix_turns_search ON turns USING gin (search)",
)
_POSTGRES_DOWN = ("DROP INDEX IF EXISTS ix_turns_search", "ALTER TABLE turns DROP COLUMN IF EXISTS search")


def upgrade() -> None:
    op.create_table(
        "facts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_id",
            sa.Integer(),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("slot", sa.String(32), nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("turn_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("conversation_id", "key", name="uq_fact_key"),
    )
    op.create_index("ix_facts_updated_at", "facts", ["updated_at"])
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("remember", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("platform", "user_id", name="uq_person_key"),
    )
    statements = _SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _POSTGRES_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = _SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _POSTGRES_DOWN
    for statement in statements:
        op.execute(statement)
    op.drop_table("people")
    op.drop_index("ix_facts_updated_at", "facts")
    op.drop_table("facts")
