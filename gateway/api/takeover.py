"""A person takes over a conversation: `POST /v1/plays/{id}/messages` (their text to the lead,
inside the play) and `POST /v1/plays/{id}/resume` (back to the playbook at a step). The inbox of
plays waiting for a person is `GET /v1/plays?awaiting=human` (gateway/api/plays.py).

The rule (gateway/engine/handover.py): a play the bot handed over (catch-all level 3,
`talk_to_human`) or that a person replied in is paused and in the inbox until resumed or ended;
meanwhile the lead's replies are recorded in its log and the bot answers nothing.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import cast

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from compliance.gate import Purpose as GatePurpose
from gateway import gate, playbook_versions
from gateway.contact_lock import lock_contact, reread
from gateway.db import transaction
from gateway.engine.takeover import human_reply, reply_purpose, resume
from gateway.errors import ApiError
from gateway.models import Lead, Play, PlayState
from gateway.sms.status import note_event
from gateway.state import app_state, current_account
from gateway.work import PLAY_ADVANCE, SMS_SEND, stage

from .openapi import error_with, operation
from .plays import PlayPublic, _account_play, _detailed
from .requests import read_json

TAGS = ["plays"]


class HumanMessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=1600)
    sender: str | None = Field(
        default=None, min_length=1, max_length=200, description="the person writing, e.g. Dana"
    )


class HumanMessagePublic(BaseModel):
    id: str
    body: str
    sent_by: str | None
    status: str = Field(description="queued (or deferred: see `send_after`)")
    send_after: datetime | None = Field(description="set when the gate deferred it")
    gate_reason: str | None


class HumanReply(BaseModel):
    message: HumanMessagePublic
    play: PlayPublic


class ResumeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str = Field(min_length=1, max_length=64, description="the step the playbook goes on at")
    by: str | None = Field(default=None, min_length=1, max_length=200, description="who resumed")


async def _locked_running_play(
    session: AsyncSession, account_id: str, request: Request
) -> tuple[Play, Lead]:
    """The account's play and its lead, under the lead's contact lock (the lead's replies and
    the play's timed steps run under it too), re-read after the lock; 409 if it has ended."""
    play = await _account_play(session, account_id, request.path_params["play_id"])
    lead = await session.get(Lead, play.lead_id)
    assert lead is not None
    await lock_contact(session, account_id, lead.phone)
    await reread(session, play)
    _refuse_ended(play)
    return play, lead


def _refuse_ended(play: Play) -> None:
    if play.state != PlayState.RUNNING:
        raise ApiError(409, "conflict", f"the play is {play.state}, not running", "play_id")


@operation(
    "Reply to the lead as a person",
    tags=TAGS,
    description="A person's text inside the play's conversation, from the number the lead "
    "knows, through the compliance gate and the send pipeline; recorded with `sender` (message, "
    "play log, event `human_replied` and its webhook). The play is then the person's: paused "
    "and in `GET /v1/plays?awaiting=human`, the bot answers none of the lead's replies until "
    "`POST /v1/plays/{id}/resume`.",
    request=HumanMessageCreate,
    example={"body": "Hi Ana, Dana here. Does 3pm work for a call?", "sender": "Dana"},
    response=HumanReply,
    status=201,
    errors={
        404: "no such play in this account",
        409: "the play has ended, a party line of it is under way, or the gate blocks the text "
        "(`code` `gate_blocked`, `reason` the gate's; nothing is sent or recorded)",
    },
)
async def post_message(request: Request) -> JSONResponse:
    body = await read_json(request, HumanMessageCreate)
    account = current_account(request)
    state = app_state(request)
    async with transaction(state["sessions"]) as session:
        play, lead = await _locked_running_play(session, account.id, request)
        if play.paused and play.awaiting_human_since is None:
            raise ApiError(409, "conflict", "a party line of this play is under way", "play_id")
        # The gate decides again when the job sends; asking now tells the person at once, and
        # a blocked text changes nothing.
        decision = await gate.decide(
            session,
            account,
            lead.phone,
            channel="sms",
            purpose=cast(GatePurpose, str(reply_purpose(play))),
            lead=lead,
            play=play,
        )
        if decision.action == "block":
            return error_with(
                409, "gate_blocked",
                f"the compliance gate blocks this text: {decision.detail or decision.reason}",
                "body", reason=decision.reason,
            )  # fmt: skip
        message = await human_reply(session, play, lead, body.body, body.sender)
        if decision.action == "defer":
            message.send_after, message.gate_reason = decision.until, decision.reason
            stage(session, SMS_SEND, message.id, at=decision.until)
            note_event(session, message.id, "deferred", detail=decision.detail)
            session.add(message)
        answer = HumanReply(
            message=HumanMessagePublic.model_validate(message, from_attributes=True),
            play=await _detailed(session, play),
        )
    return JSONResponse(answer.model_dump(mode="json"), status_code=201)


@operation(
    "Resume a play at a step",
    tags=TAGS,
    description="Gives a play a person has (in `GET /v1/plays?awaiting=human`) back to its "
    "playbook at `step`: unpaused, out of the inbox, event `resumed` and its webhook; the step "
    "runs as the engine would run it (after its own delay).",
    request=ResumeCreate,
    example={"step": "next_day", "by": "Dana"},
    response=PlayPublic,
    errors={
        404: "no such play in this account",
        409: "the play has ended, or is not waiting for a person",
        422: "`step` is not a step of the play's playbook version (with the closest one)",
    },
)
async def post_resume(request: Request) -> JSONResponse:
    body = await read_json(request, ResumeCreate)
    account = current_account(request)
    state = app_state(request)
    async with transaction(state["sessions"]) as session:
        play, _lead = await _locked_running_play(session, account.id, request)
        if play.awaiting_human_since is None:
            raise ApiError(409, "conflict", "the play is not waiting for a person", "play_id")
        playbook = await playbook_versions.load(
            session, account.id, play.playbook_id, play.playbook_version
        )
        if not playbook.has_step(body.step):
            ids = [s.id for s in playbook.steps]
            close = difflib.get_close_matches(body.step, ids, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ApiError(
                422,
                "invalid",
                f"step: {body.step!r} is not a step of {play.playbook_id} "
                f"version {play.playbook_version}{hint}",
                "step",
            )
        await resume(session, playbook, play, body.step, body.by)
        public = await _detailed(session, play)
        stage(session, PLAY_ADVANCE, play.id, batch=play.account_id)
    return JSONResponse(public.model_dump(mode="json"))


routes = [
    Route("/v1/plays/{play_id}/messages", post_message, methods=["POST"]),
    Route("/v1/plays/{play_id}/resume", post_resume, methods=["POST"]),
]
