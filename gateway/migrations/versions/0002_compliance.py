"""opt-out ledger, consent, account compliance settings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 04:36:08.345447
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY = ("opt_out_events", "opt_out_confirmations")


def _append_only_triggers() -> None:
    # The ledger is evidence: the database itself refuses to change or delete a row.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION refuse_ledger_change() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'the % table is append-only', TG_TABLE_NAME;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_ledger_change()"
            )
        return
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the {table} table is append-only'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS refuse_ledger_change()")
        return
    for table in APPEND_ONLY:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=True),
        sa.Column("captured_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("text", sa.String(length=5000), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("recorded_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index("ix_consents_account_phone", ["account_id", "phone"], unique=False)

    op.create_table(
        "opt_out_confirmations",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("sent_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("message_sid", sa.String(length=64), nullable=True),
        sa.Column("body", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_table(
        "opt_out_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("event", sa.String(length=10), nullable=False),
        sa.Column("received_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("local_time", sa.String(length=80), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=30), nullable=False),
        sa.Column("text", sa.String(length=2000), nullable=True),
        sa.Column("rule", sa.String(length=20), nullable=True),
        sa.Column("keyword", sa.String(length=100), nullable=True),
        sa.Column("message_sid", sa.String(length=64), nullable=True),
        sa.Column("call_sid", sa.String(length=64), nullable=True),
        sa.Column("inbound_number", sa.String(length=20), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("note", sa.String(length=2000), nullable=True),
        sa.Column("suppression_applied_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("opt_out_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_opt_out_events_account_phone", ["account_id", "phone", "id"], unique=False
        )
        batch_op.create_index("ix_opt_out_events_account_seq", ["account_id", "id"], unique=False)

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("compliance", sa.JSON(), server_default="{}", nullable=False))
    _append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("compliance")

    with op.batch_alter_table("opt_out_events", schema=None) as batch_op:
        batch_op.drop_index("ix_opt_out_events_account_seq")
        batch_op.drop_index("ix_opt_out_events_account_phone")

    op.drop_table("opt_out_events")
    op.drop_table("opt_out_confirmations")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_account_phone")

    op.drop_table("consents")
