"""a subscription's owed deliveries in activity order (the batched webhook delivery's claim)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # `webhooks.deliver` claims the oldest owed deliveries of one subscription: read in order
    # from this index, not by walking every delivery it ever had (the listing index) or sorting
    # every due delivery of every subscription (the due index).
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_claim",
            ["subscription_id", "status", "activity_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_claim")
