"""opt-out notice: the notice decision, its text and the message's encoding on each message

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-21 05:34:31.302160
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: messages sent before this revision have no recorded decision (the gateway then
    # treats the lead as never noticed, so the next text carries the notice).
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notice_decision", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("notice", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("encoding", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("notice_segments", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("notice_segments")
        batch_op.drop_column("encoding")
        batch_op.drop_column("notice")
        batch_op.drop_column("notice_decision")
