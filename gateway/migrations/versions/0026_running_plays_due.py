"""an account's running plays in the order they come due: the index its drain reads them by

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The drain (gateway/jobs/plays_advance.py) reads an account's due plays in the order they
    # came due, 16 at a time. Without this it read the due plays of every account by
    # `ix_plays_due` and sorted them, once a batch. Partial: only running plays.
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.create_index(
            "ix_plays_running_due",
            ["account_id", "due_at", "id"],
            unique=False,
            sqlite_where=sa.text("state = 'running'"),
            postgresql_where=sa.text("state = 'running'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.drop_index("ix_plays_running_due")
