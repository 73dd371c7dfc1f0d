"""inbox: every accepted platform message, before it is processed

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("is_private", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.UniqueConstraint("platform", "chat_id", "message_id", name="uq_inbox_platform_message"),
    )
    op.create_index("ix_inbox_status", "inbox", ["status"])
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("inbox_id", sa.Integer(), nullable=True))
        batch.create_index("ix_turns_inbox_id", ["inbox_id"])


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_index("ix_turns_inbox_id")
        batch.drop_column("inbox_id")
    op.drop_table("inbox")
