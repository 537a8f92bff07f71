"""the play list filtered by rep (GET /v1/plays?rep_id=, the console's Conversations filter)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In the list's (created_at, id) order, like the state and playbook filters' (0011): a
    # rep's page is read in order from the index instead of sorting all of the rep's plays.
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.create_index(
            "ix_plays_account_rep", ["account_id", "rep_id", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.drop_index("ix_plays_account_rep")
