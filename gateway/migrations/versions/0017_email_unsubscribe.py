"""email unsubscribe links: each account's link secret, and the address an email opt-out is for

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_secret", sa.String(length=64), nullable=True))
    # Adding a nullable column rewrites nothing and touches no row, so the ledger's
    # append-only triggers (no UPDATE, no DELETE) stay as they are.
    op.add_column("opt_out_events", sa.Column("email", sa.String(length=320), nullable=True))
    op.create_index(
        "ix_opt_out_events_account_email", "opt_out_events", ["account_id", "email", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_opt_out_events_account_email", table_name="opt_out_events")
    # Not in a batch: on SQLite that would copy the table and lose its append-only triggers.
    op.drop_column("opt_out_events", "email")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("link_secret")
