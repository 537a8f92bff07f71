"""a Messaging Service belongs to one account: the messaging_services table

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-22
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.db

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

_numbers = sa.table(
    "sender_numbers",
    sa.column("id", sa.String),
    sa.column("account_id", sa.String),
    sa.column("messaging_service_sid", sa.String),
    sa.column("created_at", gateway.db.UTCDateTime(timezone=True)),
)


def upgrade() -> None:
    services = op.create_table(
        "messaging_services",
        sa.Column("sid", sa.String(length=34), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("sid"),
    )
    with op.batch_alter_table("messaging_services", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_messaging_services_account_id"), ["account_id"], unique=False
        )
    _claim_existing_services(services)


def _claim_existing_services(services: sa.Table) -> None:
    """Each service already in use goes to the account that registered it first; the numbers
    other accounts registered with it keep their number (inbound texts still reach them by
    it) but lose the service SID, and each is logged for the operator to check."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            _numbers.c.id,
            _numbers.c.account_id,
            _numbers.c.messaging_service_sid,
            _numbers.c.created_at,
        )
        .where(_numbers.c.messaging_service_sid.is_not(None))
        .order_by(_numbers.c.created_at, _numbers.c.id)
    ).all()
    owners: dict[str, tuple[str, object]] = {}
    for number_id, account_id, sid, created_at in rows:
        owner = owners.setdefault(sid, (account_id, created_at))
        if owner[0] != account_id:
            log.warning(
                "messaging service %s is registered by accounts %s (first) and %s: kept for %s, "
                "removed from number %s",
                sid,
                owner[0],
                account_id,
                owner[0],
                number_id,
            )
            connection.execute(
                sa.update(_numbers)
                .where(_numbers.c.id == number_id)
                .values(messaging_service_sid=None)
            )
    if owners:
        op.bulk_insert(
            services,
            [
                {"sid": sid, "account_id": account_id, "created_at": created_at}
                for sid, (account_id, created_at) in owners.items()
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("messaging_services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messaging_services_account_id"))
    op.drop_table("messaging_services")
