"""source rules compare origins case-insensitively: `origin_key` (case-folded), unique per account

Rules whose origins differ only in case ("EverQuote" beside "everquote") existed before; the
oldest keeps its origin, each later one is renamed "<origin> (duplicate <id>)" so that it is
still listed (and can be changed or deleted) but no longer competes for the same leads.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_ORIGIN = 100


def _key(origin: str) -> str:
    # gateway/models/plays.py origin_key() when this was written (a migration must not change
    # with the code that follows it).
    return origin.strip().casefold()[:MAX_ORIGIN]


def upgrade() -> None:
    with op.batch_alter_table("source_rules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("origin_key", sa.String(length=MAX_ORIGIN), nullable=False, server_default="")
        )
    rules = sa.table(
        "source_rules",
        sa.column("id", sa.String),
        sa.column("account_id", sa.String),
        sa.column("origin", sa.String),
        sa.column("origin_key", sa.String),
        sa.column("created_at", sa.DateTime),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(rules.c.id, rules.c.account_id, rules.c.origin).order_by(
            rules.c.account_id, rules.c.created_at, rules.c.id
        )
    ).all()
    taken: set[tuple[str, str]] = set()
    for rule_id, account_id, written in rows:
        origin, key = written, _key(written)
        if (account_id, key) in taken:
            suffix = f" (duplicate {rule_id})"
            origin = written[: MAX_ORIGIN - len(suffix)] + suffix
            key = _key(origin)
        taken.add((account_id, key))
        connection.execute(
            sa.update(rules).where(rules.c.id == rule_id).values(origin=origin, origin_key=key)
        )
    with op.batch_alter_table("source_rules", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_source_rules_origin_key", ["account_id", "origin_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("source_rules", schema=None) as batch_op:
        batch_op.drop_constraint("uq_source_rules_origin_key", type_="unique")
        batch_op.drop_column("origin_key")
