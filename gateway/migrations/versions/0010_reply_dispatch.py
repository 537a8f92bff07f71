"""inbound texts remember when they were handed to the lead's plays

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dispatched_at", gateway.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Texts already stored were handed over (or never needed to be): don't replay them.
    op.execute("UPDATE messages SET dispatched_at = created_at WHERE direction = 'inbound'")


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("dispatched_at")
