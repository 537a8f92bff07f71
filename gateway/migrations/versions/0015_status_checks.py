"""messages get a next status check: a text whose status callbacks were lost is asked for again

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# gateway/sms/status_schedule.py CHECKS_END when this was written (a migration must not change
# with the code that follows it).
CHECKS_END = timedelta(hours=72)


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status_check_at", gateway.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_messages_status_check",
            ["status_check_at"],
            unique=False,
            sqlite_where=sa.text("status_check_at IS NOT NULL"),
            postgresql_where=sa.text("status_check_at IS NOT NULL"),
        )
    # Texts already stuck without a final status (their callbacks lost in an outage before this
    # release) are checked once at the first sweep, then follow the schedule; only those whose
    # last change is within the schedule's bound: older ones would only be checked to give up.
    moment = datetime.now(UTC)
    messages = sa.table(
        "messages",
        sa.column("direction", sa.String()),
        sa.column("status", sa.String()),
        sa.column("twilio_sid", sa.String()),
        sa.column("updated_at", gateway.db.UTCDateTime(timezone=True)),
        sa.column("status_check_at", gateway.db.UTCDateTime(timezone=True)),
    )
    op.execute(
        messages.update()
        .where(
            messages.c.direction == "outbound",
            messages.c.status.in_(["accepted", "sent"]),
            messages.c.twilio_sid.is_not(None),
            messages.c.updated_at >= moment - CHECKS_END,
        )
        .values(status_check_at=moment)
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_status_check")
        batch_op.drop_column("status_check_at")
