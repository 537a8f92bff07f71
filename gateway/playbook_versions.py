"""Loading published playbook versions. A version never changes, so it is parsed once."""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import first_row
from gateway.models import PlaybookRecord, PlaybookVersion
from gateway.playbooks import Playbook

_cache: dict[tuple[str, str, int], Playbook] = {}
CACHE_LIMIT = 1024


async def load(session: AsyncSession, account_id: str, playbook_id: str, version: int) -> Playbook:
    key = (account_id, playbook_id, version)
    found = _cache.get(key)
    if found is None:
        row = await session.get(PlaybookVersion, (account_id, playbook_id, version))
        if row is None:
            raise LookupError(f"playbook {playbook_id} version {version} not found")
        found = Playbook.model_validate(row.definition)
        if len(_cache) >= CACHE_LIMIT:
            _cache.clear()
        _cache[key] = found
    return found


async def latest_version(session: AsyncSession, account_id: str, playbook_id: str) -> int | None:
    params = {"account_id": account_id, "playbook_id": playbook_id}
    found = await first_row(session, _LATEST, params)
    return None if found is None else int(found[0])


# `latest_version`'s statement (asked for every new lead), built once.
_LATEST = select(PlaybookRecord.latest_version).where(
    PlaybookRecord.account_id == bindparam("account_id"),
    PlaybookRecord.id == bindparam("playbook_id"),
)
# The same as a column, for a caller that asks it inside a statement of its own (a new lead's
# `POST /v1/plays` asks it with the lead's upsert): parameters `account_id` and `playbook_id`.
LATEST_VERSION = _LATEST.scalar_subquery().label("latest_version")
