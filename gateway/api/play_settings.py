"""Settings given to a play (POST /v1/plays) or a source rule must be ones its playbook declares.

A setting the playbook doesn't declare used to be stored and ignored (`"agentname": "Bo"` and
the text still said "Sam"); it is refused with a did-you-mean, as unknown fields are elsewhere.
Declared means: in the playbook's `settings`, or in those of a playbook it can hand the lead to
(`goto`, followed to any depth: the settings travel with the lead), or a setting the gateway
itself reads from a source rule (`max_consent_age_days`).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import playbook_versions
from gateway.errors import ApiError

MAX_LINKED = 20  # goto targets followed; a chain longer than this is not worth loading


async def declared_settings(
    session: AsyncSession, account_id: str, playbook_id: str
) -> tuple[int, set[str]] | None:
    """The playbook's latest version number and every setting it or its goto targets declare
    (None: no such playbook)."""
    version = await playbook_versions.latest_version(session, account_id, playbook_id)
    if version is None:
        return None
    return version, await settings_declared(session, account_id, playbook_id, version)


async def settings_declared(
    session: AsyncSession, account_id: str, playbook_id: str, version: int
) -> set[str]:
    """Every setting `version` of the playbook or its goto targets (their latest) declare."""
    playbook = await playbook_versions.load(session, account_id, playbook_id, version)
    names = set(playbook.settings)
    seen, queue = {playbook_id}, list(playbook.transitions())
    while queue and len(seen) <= MAX_LINKED:
        target = queue.pop(0)
        if target in seen:
            continue
        seen.add(target)
        target_version = await playbook_versions.latest_version(session, account_id, target)
        if target_version is None:
            continue  # not published yet: its settings can't be known
        linked = await playbook_versions.load(session, account_id, target, target_version)
        names |= set(linked.settings)
        queue += linked.transitions()
    return names


def refuse_unknown(
    settings: Mapping[str, object],
    declared: Collection[str],
    playbook_id: str,
    *,
    field: str = "settings",
) -> None:
    """422 naming the first setting that isn't declared, with the closest declared name."""
    for name in settings:
        if name in declared:
            continue
        close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(sorted(declared)) or "none"
        raise ApiError(
            422,
            "invalid",
            f"{field}.{name}: playbook {playbook_id!r} has no setting {name!r}{hint}; "
            f"its settings: {known}",
            f"{field}.{name}",
        )
