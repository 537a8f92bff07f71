"""inbound texts appended by their webhook and acted on by the inbox job

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_claims", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("done_at", gateway.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Every claim so far was acted on in its own request.
    op.execute("UPDATE webhook_claims SET done_at = received_at")
    # The inbox job's claim reads the few pending rows of a kind in order; a partial index
    # holds only them, so it stays small however many claims are kept.
    with op.batch_alter_table("webhook_claims", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_claims_pending",
            ["kind", "id"],
            unique=False,
            sqlite_where=sa.text("done_at IS NULL"),
            postgresql_where=sa.text("done_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_claims", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_claims_pending")
        batch_op.drop_column("done_at")
