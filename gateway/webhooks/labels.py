"""Which activity labels an account can subscribe to: what its playbooks can produce (every
published version: old versions still run), plus the opt-out status changes."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.models import PlaybookRecord, PlaybookVersion
from gateway.playbook_versions import load
from gateway.playbooks import Activities, ActivityKind

# Opt-out/opt-in status changes of a phone, whatever the channel (SMS keyword, API, carrier);
# recorded by the ledger without a play.
STATUS_LABELS: dict[str, ActivityKind] = {"opted_out": "event", "opted_in": "event"}


async def playbook_exists(session: AsyncSession, account_id: str, playbook_id: str) -> bool:
    query = select(PlaybookRecord.id).where(
        PlaybookRecord.account_id == account_id, PlaybookRecord.id == playbook_id
    )
    return (await session.exec(query)).first() is not None


async def available_labels(
    session: AsyncSession, account_id: str, playbook_id: str | None = None
) -> dict[str, ActivityKind]:
    """label -> kind for everything the account's playbooks (or one of them) can record."""
    query = select(PlaybookVersion.playbook_id, PlaybookVersion.version).where(
        PlaybookVersion.account_id == account_id
    )
    if playbook_id is not None:
        query = query.where(PlaybookVersion.playbook_id == playbook_id)
    # Built-in events and engine outcomes exist even before a playbook is published.
    found: dict[str, ActivityKind] = Activities().labels()
    for pid, version in (await session.exec(query)).all():
        playbook = await load(session, account_id, pid, version)
        for label, kind in playbook.activity_labels().items():
            found.setdefault(label, kind)
    for label, kind in STATUS_LABELS.items():
        found.setdefault(label, kind)
    return found


def kind_of(labels: dict[str, ActivityKind], label: str) -> ActivityKind:
    """The kind to show for `label` in a sample."""
    return labels.get(label, "event")
