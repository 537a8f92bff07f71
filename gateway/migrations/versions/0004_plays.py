"""playbooks, plays, activities, reps, source rules

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 05:11:39.076289
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "key"),
    )
    op.create_table(
        "playbook_versions",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=4), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "playbook_id", "version"),
    )
    op.create_table(
        "playbooks",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("account_id", "id"),
    )
    op.create_table(
        "reps",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reps_account_id"), ["account_id"], unique=False)

    op.create_table(
        "source_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("origin", sa.String(length=100), nullable=False),
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("distribution", sa.String(length=12), nullable=False),
        sa.Column("rep_ids", sa.JSON(), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "origin", name="uq_source_rules_origin"),
    )
    op.create_table(
        "lead_originators",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("origin", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "origin", "key", name="uq_lead_originators_origin_key"),
    )
    with op.batch_alter_table("lead_originators", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lead_originators_lead_id"), ["lead_id"], unique=False)

    op.create_table(
        "plays",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("lead_id", sa.String(length=40), nullable=False),
        sa.Column("playbook_id", sa.String(length=64), nullable=False),
        sa.Column("playbook_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("due_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("waiting_reply", sa.Boolean(), nullable=False),
        sa.Column("catch_all_level", sa.Integer(), nullable=False),
        sa.Column("reengagements_sent", sa.Integer(), nullable=False),
        sa.Column("drip_halted", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("started", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("rep_id", sa.String(length=40), nullable=True),
        sa.Column("source_rule_id", sa.String(length=40), nullable=True),
        sa.Column("last_lead_reply_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", gateway.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.create_index(
            "ix_plays_account_created", ["account_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_plays_due", ["state", "due_at"], unique=False)
        batch_op.create_index(
            "uq_plays_running",
            ["account_id", "lead_id", "playbook_id"],
            unique=True,
            sqlite_where=sa.text("state = 'running'"),
            postgresql_where=sa.text("state = 'running'"),
        )

    op.create_table(
        "activities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("play_id", sa.String(length=40), nullable=True),
        sa.Column("lead_id", sa.String(length=40), nullable=True),
        sa.Column("playbook_id", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=True),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.ForeignKeyConstraint(
            ["play_id"],
            ["plays.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.create_index("ix_activities_account_id", ["account_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_activities_play_id"), ["play_id"], unique=False)

    op.create_table(
        "play_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("play_id", sa.String(length=40), nullable=False),
        sa.Column("at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["play_id"],
            ["plays.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("play_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_play_log_play_id"), ["play_id"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("play_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("step_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_messages_play_id"), ["play_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_play_id"))
        batch_op.drop_column("step_id")
        batch_op.drop_column("play_id")

    with op.batch_alter_table("play_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_play_log_play_id"))

    op.drop_table("play_log")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activities_play_id"))
        batch_op.drop_index("ix_activities_account_id")

    op.drop_table("activities")
    with op.batch_alter_table("plays", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_plays_running",
            sqlite_where=sa.text("state = 'running'"),
            postgresql_where=sa.text("state = 'running'"),
        )
        batch_op.drop_index("ix_plays_due")
        batch_op.drop_index("ix_plays_account_created")

    op.drop_table("plays")
    with op.batch_alter_table("lead_originators", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lead_originators_lead_id"))

    op.drop_table("lead_originators")
    op.drop_table("source_rules")
    with op.batch_alter_table("reps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reps_account_id"))

    op.drop_table("reps")
    op.drop_table("playbooks")
    op.drop_table("playbook_versions")
    op.drop_table("idempotency_keys")
