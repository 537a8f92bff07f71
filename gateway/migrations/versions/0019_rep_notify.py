"""source rules say how the assigned rep is told: `notify` ({"sms": true} unless set)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rules get the default: their reps are texted from now on, as new rules' are.
    with op.batch_alter_table("source_rules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("notify", sa.JSON(), nullable=False, server_default='{"sms": true}')
        )


def downgrade() -> None:
    with op.batch_alter_table("source_rules", schema=None) as batch_op:
        batch_op.drop_column("notify")
