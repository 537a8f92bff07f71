"""`/v1/leads/{id}/assign`: hand a lead to a rep by hand (source rules with `manual`
distribution, or overriding the round robin), or take it back.

The rep is assigned to every running play of the lead: each records the event `rep_assigned`
(or `rep_unassigned`) with its webhook and a play-log entry, and the rep is texted as the
play's source rule says (gateway/engine/rep_notices.py). Assigning the rep a lead already has
changes nothing and tells nobody again, so a retried request is harmless. A lead or rep of
another account is a 404.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.clock import now
from gateway.db import transaction
from gateway.engine import rep_notices
from gateway.engine.records import log, record_activity
from gateway.errors import ApiError
from gateway.models import ActivityType, Lead, Play, PlayState, Rep
from gateway.state import app_state, current_account

from .openapi import operation
from .reps import find_rep
from .requests import read_json

TAGS = ["leads"]


class AssignmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rep_id: str = Field(min_length=1, max_length=40, description="one of the account's reps")


class AssignmentPublic(BaseModel):
    lead_id: str
    rep_id: str | None = Field(description="the rep now assigned (null after unassigning)")
    play_ids: list[str] = Field(description="the lead's running plays the change applies to")
    changed_play_ids: list[str] = Field(
        description="those whose rep changed (each recorded an activity)"
    )


async def _running_plays(session: AsyncSession, request: Request) -> tuple[Lead, list[Play]]:
    """The account's lead (404 otherwise) and its running plays, oldest first (409: none)."""
    account_id = current_account(request).id
    lead = (
        await session.exec(
            select(Lead).where(
                Lead.id == request.path_params["lead_id"], Lead.account_id == account_id
            )
        )
    ).first()
    if lead is None:
        raise ApiError(404, "not_found", "no such lead")
    plays = (
        await session.exec(
            select(Play)
            .where(
                Play.account_id == account_id,
                Play.lead_id == lead.id,
                Play.state == PlayState.RUNNING,
            )
            .order_by(col(Play.created_at), col(Play.id))
            .with_for_update()  # two assignments of one lead apply one after the other
        )
    ).all()
    if not plays:
        raise ApiError(409, "conflict", "the lead has no running play to assign a rep to")
    return lead, list(plays)


def _answer(lead: Lead, rep: Rep | None, plays: list[Play], changed: list[Play]) -> JSONResponse:
    body = AssignmentPublic(
        lead_id=lead.id,
        rep_id=rep.id if rep else None,
        play_ids=[p.id for p in plays],
        changed_play_ids=[p.id for p in changed],
    )
    return JSONResponse(body.model_dump(mode="json"))


@operation(
    "Assign a rep to a lead",
    tags=TAGS,
    description="Assigns the rep to the lead's running plays; each records `rep_assigned` "
    "(webhook payloads then carry `rep_id`, `rep_name`, `rep_phone`) and the rep is texted "
    "with the lead's name, phone and id, as the play's source rule's `notify` says.",
    request=AssignmentCreate,
    example={"rep_id": "rep_01J9Z8Q4V6"},
    response=AssignmentPublic,
    errors={409: "the lead has no running play"},
)
async def assign(request: Request) -> JSONResponse:
    body = await read_json(request, AssignmentCreate)
    state = app_state(request)
    async with transaction(state["sessions"]) as session:
        rep = await find_rep(session, current_account(request).id, body.rep_id)
        lead, plays = await _running_plays(session, request)
        changed = [play for play in plays if play.rep_id != rep.id]
        for play in changed:
            previous = play.rep_id
            play.rep_id, play.updated_at = rep.id, now()
            session.add(play)
            log(session, play, "rep_assigned", None, rep_id=rep.id, previous_rep_id=previous)
            await record_activity(session, play, ActivityType.EVENT, "rep_assigned", rep.name)
        if changed:
            # One text for the lead, however many plays it is in: the newest play's.
            await rep_notices.notify_rep(session, changed[-1], rep, "assigned")
    return _answer(lead, rep, plays, changed)


@operation(
    "Unassign the lead's rep",
    tags=TAGS,
    description="Takes the rep off the lead's running plays; each that had one records "
    "`rep_unassigned` (its note names the rep).",
    response=AssignmentPublic,
    errors={409: "the lead has no running play"},
)
async def unassign(request: Request) -> JSONResponse:
    async with transaction(app_state(request)["sessions"]) as session:
        lead, plays = await _running_plays(session, request)
        changed = [play for play in plays if play.rep_id is not None]
        for play in changed:
            previous = await session.get(Rep, play.rep_id)
            note = f"{previous.name} ({previous.id})" if previous else play.rep_id
            log(session, play, "rep_unassigned", None, previous_rep_id=play.rep_id)
            play.rep_id, play.updated_at = None, now()
            session.add(play)
            await record_activity(session, play, ActivityType.EVENT, "rep_unassigned", note)
    return _answer(lead, None, plays, changed)


routes = [
    Route("/v1/leads/{lead_id}/assign", assign, methods=["POST"]),
    Route("/v1/leads/{lead_id}/assign", unassign, methods=["DELETE"]),
]
