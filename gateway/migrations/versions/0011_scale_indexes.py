"""indexes for a million plays: the undispatched-replies sweep and the play list's filters

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # bench/scale.py showed each of these queries scanning the whole table (or the account's
    # whole index range) at 1,000,000 plays; RESULTS.md has the plans before and after.
    # Partial on `IS NULL` (no bound value, so every plan can use it), and without
    # dispatched_at among the columns: after an `IS NULL` column the index order would not
    # serve `ORDER BY created_at`, and PostgreSQL chose a full scan and a sort instead.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_undispatched",
            ["direction", "created_at"],
            unique=False,
            sqlite_where=sa.text("dispatched_at IS NULL"),
            postgresql_where=sa.text("dispatched_at IS NULL"),
        )
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.create_index(
            "ix_plays_account_state", ["account_id", "state", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_plays_account_playbook",
            ["account_id", "playbook_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index("ix_plays_account_lead", ["account_id", "lead_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.drop_index("ix_plays_account_lead")
        batch_op.drop_index("ix_plays_account_playbook")
        batch_op.drop_index("ix_plays_account_state")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_undispatched")
