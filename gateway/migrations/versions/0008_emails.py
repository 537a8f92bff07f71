"""emails (email actions: queued, sent, failed, blocked or captured)

Revision ID: 0008
Revises: 0004
Create Date: 2026-11-21 05:33:45.294496
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0008"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("play_id", sa.String(length=40), nullable=True),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("from_address", sa.String(length=320), nullable=True),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("gate_reason", sa.String(length=60), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("attempt_started_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("send_after", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.create_index(
            "ix_emails_account_created", ["account_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_emails_account_lead", ["account_id", "lead_id"], unique=False)
        batch_op.create_index("ix_emails_due", ["status", "send_after"], unique=False)
        batch_op.create_index(batch_op.f("ix_emails_play_id"), ["play_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_emails_play_id"))
        batch_op.drop_index("ix_emails_due")
        batch_op.drop_index("ix_emails_account_lead")
        batch_op.drop_index("ix_emails_account_created")

    op.drop_table("emails")
