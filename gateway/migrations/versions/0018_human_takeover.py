"""human take-over: when a play started waiting for a person (the inbox), and who sent a text

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("awaiting_human_since", gateway.db.UTCDateTime(timezone=True), nullable=True)
        )
        # GET /v1/plays?awaiting=human, oldest first; partial: almost no play waits for a person.
        batch_op.create_index(
            "ix_plays_awaiting_human",
            ["account_id", "awaiting_human_since", "id"],
            unique=False,
            sqlite_where=sa.text("awaiting_human_since IS NOT NULL"),
            postgresql_where=sa.text("awaiting_human_since IS NOT NULL"),
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_by", sa.String(length=200), nullable=True))
    # Plays a catch-all handed to a human before this release wait in the inbox since their
    # last change (the moment they were paused, as near as the row knows).
    plays = sa.table(
        "plays",
        sa.column("state", sa.String()),
        sa.column("paused", sa.Boolean()),
        sa.column("catch_all_level", sa.Integer()),
        sa.column("updated_at", gateway.db.UTCDateTime(timezone=True)),
        sa.column("awaiting_human_since", gateway.db.UTCDateTime(timezone=True)),
    )
    op.execute(
        plays.update()
        .where(plays.c.state == "running", plays.c.paused.is_(True), plays.c.catch_all_level >= 3)
        .values(awaiting_human_since=plays.c.updated_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sent_by")
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.drop_index("ix_plays_awaiting_human")
        batch_op.drop_column("awaiting_human_since")
