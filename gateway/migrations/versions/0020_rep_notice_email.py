"""reps are told by email too: an email may be a notice to a rep (`emails.rep_id`), a rep may
stop notice emails to an address (`reps.notice_emails_stopped`), and a source rule's `notify`
says only what it names (the playbook's `notify` gives the rest)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rep_id", sa.String(length=40), nullable=True))
    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("notice_emails_stopped", sa.String(length=320), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "notice_emails_stopped_at", gateway.db.UTCDateTime(timezone=True), nullable=True
            )
        )
    # Rules stored before this say `{"sms": true}` outright (0019's default), which is what the
    # playbook's default would give them anyway; new rules store only what they name.
    with op.batch_alter_table("source_rules", schema=None) as batch_op:
        batch_op.alter_column("notify", server_default="{}")


def downgrade() -> None:
    with op.batch_alter_table("source_rules", schema=None) as batch_op:
        batch_op.alter_column("notify", server_default='{"sms": true}')
    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.drop_column("notice_emails_stopped_at")
        batch_op.drop_column("notice_emails_stopped")
    with op.batch_alter_table("emails", schema=None) as batch_op:
        batch_op.drop_column("rep_id")
