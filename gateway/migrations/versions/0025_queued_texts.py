"""an account's queued texts in order: the index an account's drain reads its batches by

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The drain (gateway/jobs/sms_sends.py) reads an account's queued texts oldest first, 16 at
    # a time. Without this it read every queued text of every account by `ix_messages_due` and
    # sorted them, once a batch. Partial: only queued texts, which leave it when claimed.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_queued",
            ["account_id", "created_at", "id"],
            unique=False,
            sqlite_where=sa.text("status = 'queued'"),
            postgresql_where=sa.text("status = 'queued'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_queued")
