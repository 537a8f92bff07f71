"""`/v1/party-lines` and a play's party lines: read what each call leg did, start one by API.

A party line started here is the play's, but outside its playbook's flow: the play is not
paused, its activities (events and outcomes) are recorded on the play as they happen, and its
end gives the play its outcome as a call step's would (gateway/playbooks/README.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.db import transaction
from gateway.engine.records import log
from gateway.errors import ApiError
from gateway.models import Lead, PartyLineRecord, Play, PlayState
from gateway.state import app_state, current_account
from voice.starting import PartyLineError, start_party_line
from voice.states import PartyLine

from .openapi import error_with, operation
from .requests import read_json

TAGS = ["party lines"]


class LegPublic(BaseModel):
    """One call of a party line: to the lead (one per attempt) or to a rep (one per rep)."""

    leg: str = Field(description="lead-1, rep-2, ...")
    role: str = Field(description="lead or rep")
    number: str
    rep_id: str | None
    call_sid: str | None
    status: str | None = Field(description="Twilio's last call status; null: not reported yet")
    answered_by: str | None = Field(description="machine detection's verdict")
    result: str | None = Field(description="why the leg stopped counting (connected, ...)")
    error_code: int | None
    requested_at: datetime
    answered_at: datetime | None
    accepted_at: datetime | None = Field(description="a rep pressed 1")
    ended_at: datetime | None
    duration: int | None = Field(description="seconds, as Twilio reported")


class PartyLinePublic(BaseModel):
    id: str
    play_id: str
    lead_id: str
    step_id: str | None = Field(description="the playbook's call step; null if started by API")
    state: str = Field(description="the party line's phase; `ended` when over")
    end_reason: str | None
    end_note: str | None
    conference_sid: str | None
    connected_rep_id: str | None
    callback_requested: bool
    opted_out: bool
    retry_at: datetime | None = Field(description="when the lead is called again")
    legs: list[LegPublic]
    created_at: datetime
    ended_at: datetime | None


class PartyLineList(BaseModel):
    data: list[PartyLinePublic]


class PartyLineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the party-line policy, e.g. "
        '{"max_rep_attempts": 2, "machine": "hangup", "lead_retries": 0}',
    )


def public(row: PartyLineRecord) -> dict[str, Any]:
    """A party line as the API shows it (its legs come from the stored machine state)."""
    state = PartyLine.from_json(row.state)
    legs = [
        LegPublic(
            leg=leg.leg_id,
            role=leg.role,
            number=leg.number,
            rep_id=leg.rep_id,
            call_sid=leg.call_sid,
            status=leg.status,
            answered_by=leg.answered_by,
            result=leg.result,
            error_code=leg.error_code,
            requested_at=leg.requested_at,
            answered_at=leg.answered_at,
            accepted_at=leg.accepted_at,
            ended_at=leg.ended_at,
            duration=leg.duration,
        )
        for leg in state.legs()
    ]
    return PartyLinePublic(
        id=row.id,
        play_id=row.play_id,
        lead_id=row.lead_id,
        step_id=row.step_id,
        state=state.phase,
        end_reason=state.end_reason,
        end_note=state.end_note or None,
        conference_sid=state.conference_sid,
        connected_rep_id=state.connected_rep_id,
        callback_requested=state.callback_requested,
        opted_out=state.opted_out,
        retry_at=state.retry_at,
        legs=legs,
        created_at=row.created_at,
        ended_at=row.ended_at,
    ).model_dump(mode="json")


async def party_lines_of(session: AsyncSession, account_id: str, play_id: str) -> list[Any]:
    """The play's party lines, oldest first (for the play's own representation too)."""
    rows = (
        await session.exec(
            select(PartyLineRecord)
            .where(PartyLineRecord.account_id == account_id, PartyLineRecord.play_id == play_id)
            .order_by(col(PartyLineRecord.created_at), col(PartyLineRecord.id))
        )
    ).all()
    return [public(row) for row in rows]


async def _play(session: AsyncSession, account_id: str, play_id: str) -> Play:
    query = select(Play).where(Play.account_id == account_id, Play.id == play_id)
    play = (await session.exec(query)).first()
    if play is None:
        raise ApiError(404, "not_found", "no such play")
    return play


@operation("Get a party line", tags=TAGS, response=PartyLinePublic)
async def get_party_line(request: Request) -> JSONResponse:
    account_id = current_account(request).id
    query = select(PartyLineRecord).where(
        PartyLineRecord.account_id == account_id,
        PartyLineRecord.id == request.path_params["party_line_id"],
    )
    async with app_state(request)["sessions"]() as session:
        row = (await session.exec(query)).first()
    if row is None:
        raise ApiError(404, "not_found", "no such party line")
    return JSONResponse(public(row))


@operation("List a play's party lines", tags=TAGS, response=PartyLineList)
async def list_play_party_lines(request: Request) -> JSONResponse:
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        play = await _play(session, account_id, request.path_params["play_id"])
        data = await party_lines_of(session, account_id, play.id)
    return JSONResponse({"data": data})


@operation(
    "Start a party line",
    tags=TAGS,
    description="Calls the lead now (after the compliance gate), then the play's reps. "
    "The party line's progress and outcome are recorded on the play as activities; "
    "`completed`, `callback_requested` and `rep_unsuccessful` end the play with that outcome.",
    request=PartyLineCreate,
    example={"policy": {"max_rep_attempts": 2, "lead_retries": 0}},
    response=PartyLinePublic,
    status=201,
    errors={409: "the play is not running, or already has a live party line"},
)
async def create_party_line(request: Request) -> JSONResponse:
    body = await read_json(request, PartyLineCreate)
    account = current_account(request)
    state = app_state(request)
    async with transaction(state["sessions"]) as session:
        play = await _play(session, account.id, request.path_params["play_id"])
        if play.state != PlayState.RUNNING:
            raise ApiError(409, "conflict", f"the play is {play.state}, not running")
        lead = await session.get(Lead, play.lead_id)
        assert lead is not None
        try:
            row = await start_party_line(
                session, account=account, play=play, lead=lead, overrides=body.policy
            )
        except PartyLineError as exc:
            if exc.code == "invalid":
                raise ApiError(422, "invalid", exc.message, "policy") from None
            return error_with(409, "conflict", exc.message, existing_id=exc.existing_id)
        log(session, play, "party_line", None, party_line_id=row.id)
    return JSONResponse(public(row), status_code=201)


routes = [
    Route("/v1/party-lines/{party_line_id}", get_party_line, methods=["GET"]),
    Route("/v1/plays/{play_id}/party-lines", list_play_party_lines, methods=["GET"]),
    Route("/v1/plays/{play_id}/party-line", create_party_line, methods=["POST"]),
]
