"""Starting a party line for a play: its policy, words, caller id, and the row the job runs.

Creating the row is all a start does (cheap, inside the caller's transaction); the
`party_lines.run` job, staged in the same transaction, then asks the gate and places the lead's
call. The caller writes the play's log entry (the play log is the engine's).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.ids import new_id
from gateway.lead_number import number_lead_knows
from gateway.models import (
    Account,
    Lead,
    LeadOriginator,
    PartyLineRecord,
    Play,
    Rep,
    SourceRule,
)
from gateway.work import PARTY_LINE_RUN, stage
from voice.policy import Policy
from voice.states import PartyLine

log = logging.getLogger(__name__)

SETTING_PREFIX = "party_line_"  # play settings `party_line_max_rep_attempts: 2` tune the policy


class PartyLineError(Exception):
    """A party line can't start; `code` is the API's error code."""

    def __init__(self, code: str, message: str, existing_id: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.existing_id = code, message, existing_id


def policy_for(account: Account, play: Play, overrides: dict[str, Any] | None = None) -> Policy:
    """The account's defaults, the play's `party_line_*` settings, then explicit overrides.

    ValueError names a bad field.
    """
    values: dict[str, Any] = {"business_name": account.name}
    for key, value in play.settings.items():
        if key.startswith(SETTING_PREFIX):
            values[key.removeprefix(SETTING_PREFIX)] = value
    values.update(overrides or {})
    return Policy.from_json(values)


def _answers(play: Play) -> str:
    parts = [f"{key.replace('_', ' ')}: {value}" for key, value in play.answers.items()]
    return (", ".join(parts) + ".") if parts else ""


async def _source(session: AsyncSession, play: Play) -> str | None:
    if play.source_rule_id:
        query = select(SourceRule.origin).where(
            SourceRule.account_id == play.account_id, SourceRule.id == play.source_rule_id
        )
        origin = (await session.exec(query)).first()
        if origin:
            return origin
    query2 = (
        select(LeadOriginator.origin)
        .where(LeadOriginator.account_id == play.account_id, LeadOriginator.lead_id == play.lead_id)
        .order_by(col(LeadOriginator.id))
    )
    return (await session.exec(query2)).first()


async def caller_id(session: AsyncSession, account_id: str, phone: str) -> str | None:
    """The number the lead knows (gateway/lead_number.py): a call comes from the number the
    lead's texts came from."""
    number = await number_lead_knows(session, account_id, phone)
    return number.number if number is not None else None


async def live_party_line(session: AsyncSession, account_id: str, play_id: str) -> str | None:
    """The play's party line that has not ended, if any."""
    query = select(PartyLineRecord.id).where(
        PartyLineRecord.account_id == account_id,
        PartyLineRecord.play_id == play_id,
        col(PartyLineRecord.ended_at).is_(None),
    )
    return (await session.exec(query)).first()


async def start_party_line(
    session: AsyncSession,
    *,
    account: Account,
    play: Play,
    lead: Lead,
    step_id: str | None = None,
    whisper: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> PartyLineRecord:
    """A new party line for the play (PartyLineError: one is live, or no number to call from).

    `whisper`: the playbook's words for the rep (already filled); the policy's otherwise.
    """
    existing = await live_party_line(session, account.id, play.id)
    if existing is not None:
        raise PartyLineError("conflict", "the play already has a live party line", existing)
    try:
        policy = policy_for(account, play, overrides)
    except ValueError as exc:
        raise PartyLineError("invalid", f"party-line policy: {exc}") from None
    from_number = await caller_id(session, account.id, lead.phone)
    if from_number is None:
        raise PartyLineError("no_number", "the account has no number to call from")
    rep_name = None
    if play.rep_id:
        query = select(Rep.name).where(Rep.account_id == account.id, Rep.id == play.rep_id)
        rep_name = (await session.exec(query)).first()
    party_line_id = new_id("pl")
    moment = now()
    state = PartyLine.new(party_line_id, lead.phone, now=moment, lead_name=lead.first_name)
    row = PartyLineRecord(
        id=party_line_id,
        account_id=account.id,
        play_id=play.id,
        lead_id=lead.id,
        step_id=step_id,
        from_number=from_number,
        phase=state.phase,
        state=state.to_json(),
        policy=policy.to_json(),
        greeting=policy.greeting(lead_name=lead.first_name, rep_name=rep_name),
        whisper=whisper
        or policy.whisper(
            lead_name=" ".join(n for n in (lead.first_name, lead.last_name) if n) or None,
            source=await _source(session, play),
            answers=_answers(play),
        ),
        wake_at=moment,  # the job asks the gate at once
        created_at=moment,
        updated_at=moment,
    )
    session.add(row)
    await session.flush()
    stage(session, PARTY_LINE_RUN, party_line_id, variant=row.version)
    return row
