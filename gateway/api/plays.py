"""`/v1/plays` (start, read, list, stop) and `POST /v1/leads` (a lead whose source has a rule
starts that rule's playbook at once).

`POST /v1/plays` honours `Idempotency-Key`: the same key with the same body answers what the
first request answered (no second lead, play or text); the same key with another body is a
409. The key is claimed in the transaction that creates the play, so two concurrent requests
with one key can't both create. Only a success is remembered: a refused request (4xx) or a
failure (5xx) rolls back with its claim, changes nothing, and leaves its key free to retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import activity_webhooks, playbook_versions
from gateway.clock import Instant, now
from gateway.db import conflict_insert, transaction
from gateway.engine import rep_notices
from gateway.engine.records import end, record_activity
from gateway.engine.starting import RunningPlayExists, start_play
from gateway.errors import ApiError
from gateway.jobs import sms_send
from gateway.leads import (
    Also,
    LeadCreate,
    LeadPublic,
    public_leads,
    upsert_lead,
    upsert_lead_asking,
)
from gateway.models import (
    Activity,
    ActivityType,
    IdempotencyKey,
    Message,
    MessageStatus,
    Play,
    PlayState,
    SourceRule,
)
from gateway.models.plays import LeadOriginator, origin_key
from gateway.playbooks import Playbook
from gateway.reps import assign_rep
from gateway.sms.outbox import hold_for_claim
from gateway.state import app_state, current_account

from .next_action import NextAction, next_action
from .openapi import error_with, operation
from .pagination import next_cursor, page
from .play_settings import refuse_unknown, settings_declared
from .requests import read_json, read_query

TAGS = ["plays"]
# The body /docs shows for POST /v1/plays (and its lead for POST /v1/leads).
PLAY_EXAMPLE: dict[str, Any] = {
    "playbook_id": "quote-drip",
    "lead": {
        "phone": "+14155550101",
        "first_name": "Ana",
        "email": "ana@example.com",
        "state": "TX",
        "originators": [{"origin": "EverQuote", "key": "eq-123"}],
        "consent": {
            "captured_at": "2026-01-15T14:02:00Z",
            "source": "quote form",
            "url": "https://quotes.example.com/form",
        },
    },
    "settings": {"partner_name": "Acme Insurance"},
}
SettingValue = str | int | float | bool | None


class PlayCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook_id: str = Field(min_length=1, max_length=64)
    lead: LeadCreate
    settings: dict[str, SettingValue] = Field(
        default_factory=dict,
        max_length=50,
        description="overrides of the playbook's settings; a name the playbook (or a playbook "
        "it moves leads to) doesn't declare is a 422 with the closest declared one",
    )


class ActivityPublic(BaseModel):
    id: str
    type: str
    label: str
    note: str | None
    created_at: datetime


class PlayMessagePublic(BaseModel):
    id: str
    direction: str
    body: str
    status: str
    step_id: str | None
    sent_by: str | None = Field(description="the person who wrote it (POST .../messages)")
    created_at: datetime


class PlayPublic(BaseModel):
    id: str
    lead_id: str
    playbook_id: str
    playbook_version: int
    state: Literal["running", "stopped", "has_outcome", "opted_out"]
    outcome: str | None
    step_id: str | None
    waiting_reply: bool
    paused: bool
    awaiting_human_since: datetime | None = Field(
        description="since when a person has the conversation (in `?awaiting=human`)"
    )
    settings: dict[str, Any]
    answers: dict[str, Any]
    rep_id: str | None
    source_rule_id: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    next_action: NextAction | None = Field(
        description="what the play does next: send_text, send_email, party_line, wait_reply "
        "(for the lead's answer), reengagement (a nudge if no answer comes), start_playbook "
        "(goto), record_outcome, end; null once it has ended or while a person has it"
    )
    next_action_at: datetime | None = Field(
        description="when it does that; null when it waits on the lead or on a call"
    )
    activities: list[ActivityPublic] | None = None
    messages: list[PlayMessagePublic] | None = None


class PlayList(BaseModel):
    data: list[PlayPublic]
    next_cursor: str | None


class PlayQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["running", "stopped", "has_outcome", "opted_out"] | None = None
    lead_id: str | None = Field(default=None, max_length=40)
    playbook_id: str | None = Field(default=None, max_length=64)
    rep_id: str | None = Field(default=None, max_length=40, description="the rep assigned")
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="a lead origin: plays of leads with an originator of exactly this `origin` "
        "(as the lead's `originators` give it)",
    )
    since: Instant | None = Field(default=None, description="started at or after this time")
    until: Instant | None = Field(default=None, description="started before this time")
    awaiting: Literal["human"] | None = Field(
        default=None,
        description="`human`: the inbox, running plays waiting for a person, oldest wait first",
    )
    cursor: str | None = Field(default=None, max_length=80)
    limit: int = Field(default=50, ge=1, le=200)


class LeadStarted(BaseModel):
    lead: LeadPublic
    play: PlayPublic | None = Field(
        description="the play its source rule started; or, when the lead already had a running "
        "play of that playbook, that play (`play_started` false); null without a source rule"
    )
    play_started: bool = Field(
        description="whether this request started `play`: false when there is no source rule or "
        "the lead already had a running play of its playbook (then the answer is 200, not 201)"
    )


_DERIVED = ("activities", "messages", "next_action", "next_action_at")
_PLAY_FIELDS = [n for n in PlayPublic.model_fields if n not in _DERIVED]


def _public(play: Play, playbook: Playbook | None) -> PlayPublic:
    action, at = next_action(play, playbook)
    return PlayPublic.model_validate(
        {
            **{name: getattr(play, name) for name in _PLAY_FIELDS},
            "next_action": action,
            "next_action_at": at,
        }
    )


async def _public_many(session: AsyncSession, plays: Sequence[Play]) -> list[PlayPublic]:
    """Plays as the API shows them; one playbook load per distinct version (cached)."""
    playbooks: dict[tuple[str, int], Playbook | None] = {}
    for play in plays:
        key = (play.playbook_id, play.playbook_version)
        if key not in playbooks and play.state == PlayState.RUNNING:
            playbooks[key] = await playbook_versions.load(
                session, play.account_id, play.playbook_id, play.playbook_version
            )
    return [_public(p, playbooks.get((p.playbook_id, p.playbook_version))) for p in plays]


async def _with_next_action(session: AsyncSession, play: Play) -> PlayPublic:
    return (await _public_many(session, [play]))[0]


async def _detailed(session: AsyncSession, play: Play) -> PlayPublic:
    public = await _with_next_action(session, play)
    await activity_webhooks.write_kept(session)  # what this transaction recorded, shown too
    activities = (
        await session.exec(
            select(Activity).where(Activity.play_id == play.id).order_by(col(Activity.id))
        )
    ).all()
    public.activities = [
        ActivityPublic(
            id=a.public_id, type=a.type, label=a.label, note=a.note, created_at=a.created_at
        )
        for a in activities
    ]
    messages = (
        await session.exec(
            select(Message)
            .where(Message.account_id == play.account_id, Message.play_id == play.id)
            .order_by(col(Message.created_at), col(Message.id))
        )
    ).all()
    public.messages = [PlayMessagePublic.model_validate(m, from_attributes=True) for m in messages]
    return public


async def _account_play(session: AsyncSession, account_id: str, play_id: str) -> Play:
    play = (
        await session.exec(select(Play).where(Play.id == play_id, Play.account_id == account_id))
    ).first()
    if play is None:
        raise ApiError(404, "not_found", "no such play")
    return play


def _request_hash(body: PlayCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _claim_key(
    session: AsyncSession, account_id: str, key: str, request_hash: str
) -> JSONResponse | None:
    """None when the key is new (now claimed); else the answer for a repeated key."""
    connection = await session.connection()
    statement = conflict_insert(connection, IdempotencyKey).values(
        account_id=account_id, key=key, request_hash=request_hash, created_at=now()
    )
    result = await connection.execute(
        statement.on_conflict_do_nothing(index_elements=["account_id", "key"])
    )
    if result.rowcount == 1:
        return None
    stored = await session.get(IdempotencyKey, (account_id, key))
    assert stored is not None
    if stored.request_hash != request_hash:
        raise ApiError(
            409, "idempotency_conflict", "Idempotency-Key was used with another body", "lead"
        )
    if stored.response is None or stored.status_code is None:
        raise ApiError(409, "in_progress", "a request with this Idempotency-Key is in progress")
    return JSONResponse(stored.response, status_code=stored.status_code)


@operation(
    "Start a play",
    tags=TAGS,
    description="Creates or updates the lead (one per phone) and starts the playbook's latest "
    "version on it. A first step due at once runs before the answer: its text is queued (and "
    "sent right after), and the play shows the step after it. Honours `Idempotency-Key`.",
    request=PlayCreate,
    example=PLAY_EXAMPLE,
    response=PlayPublic,
    status=201,
    errors={404: "`playbook_id` names no playbook of this account",
            409: "the lead already has a running play of this playbook (`existing_id`), or "
            "the Idempotency-Key was used with another body"},
)  # fmt: skip
async def create_play(request: Request) -> JSONResponse:
    body = await read_json(request, PlayCreate)
    account = current_account(request)
    state = app_state(request)
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ApiError(400, "bad_request", "Idempotency-Key must be 1-200 characters")
    async with transaction(state["sessions"], brief=True) as session:
        if key is not None:
            repeated = await _claim_key(session, account.id, key, _request_hash(body))
            if repeated is not None:
                return repeated
        # The play's first step runs in this transaction under the contact lock: taken before
        # the lead's row is written, in the order the jobs take them (by the upsert itself).
        # The playbook's latest version is asked with the lead's upsert (one statement fewer
        # per lead): a refusal below raises, and the transaction's rollback undoes the lead's
        # row and the key's claim, so a refused request still changes nothing.
        lead, version = await upsert_lead_asking(
            session,
            account.id,
            body.lead,
            Also(playbook_versions.LATEST_VERSION, {"playbook_id": body.playbook_id}),
            lock=True,
        )
        if version is None:
            raise ApiError(404, "not_found", "no such playbook", "playbook_id")
        declared = await settings_declared(session, account.id, body.playbook_id, version)
        refuse_unknown(body.settings, declared, body.playbook_id)
        # Its first text is claimed below, and written then, already `sending`.
        hold_for_claim(session)
        try:
            play = await start_play(
                session,
                lead=lead,
                playbook_id=body.playbook_id,
                settings=body.settings,
                version=version,  # the version whose settings were checked
            )
        except LookupError:
            raise ApiError(404, "not_found", "no such playbook", "playbook_id") from None
        except ValueError as exc:
            raise ApiError(422, "invalid", f"settings: {exc}", "settings") from None
        except RunningPlayExists as exc:
            # A refused request changes nothing: undo the lead's upsert and the key's claim, so
            # the same key can be used again once the running play has ended.
            await session.rollback()
            return error_with(
                409, "conflict", "the lead already has a running play of this playbook",
                "playbook_id", existing_id=exc.play_id,
            )  # fmt: skip
        # Speed to lead: the first text is gated and claimed here, and sent once this commits.
        await sms_send.claim_staged(session, account)
        public = (await _with_next_action(session, play)).model_dump(mode="json")
        if key is not None:
            await session.exec(
                update(IdempotencyKey)
                .where(col(IdempotencyKey.account_id) == account.id, col(IdempotencyKey.key) == key)
                .values(status_code=201, response=public)
            )
    return JSONResponse(public, status_code=201)


@operation("Get a play", tags=TAGS, response=PlayPublic)
async def get_play(request: Request) -> JSONResponse:
    account = current_account(request)
    async with app_state(request)["sessions"]() as session:
        play = await _account_play(session, account.id, request.path_params["play_id"])
        return JSONResponse((await _detailed(session, play)).model_dump(mode="json"))


def list_statement(account_id: str, query: PlayQuery) -> SelectOfScalar[Play]:
    """The query behind `GET /v1/plays` (bench/scale.py times and explains this very one)."""
    statement = select(Play).where(Play.account_id == account_id)
    if query.state is not None:
        statement = statement.where(Play.state == query.state)
    if query.lead_id is not None:
        statement = statement.where(Play.lead_id == query.lead_id)
    if query.playbook_id is not None:
        statement = statement.where(Play.playbook_id == query.playbook_id)
    if query.rep_id is not None:
        statement = statement.where(Play.rep_id == query.rep_id)
    if query.source is not None:
        # The account's leads from that origin (uq_lead_originators_origin_key's prefix).
        from_source = select(LeadOriginator.lead_id).where(
            LeadOriginator.account_id == account_id, LeadOriginator.origin == query.source
        )
        statement = statement.where(col(Play.lead_id).in_(from_source))
    if query.since is not None:
        statement = statement.where(col(Play.created_at) >= query.since)
    if query.until is not None:
        statement = statement.where(col(Play.created_at) < query.until)
    if query.awaiting == "human":
        # The inbox (gateway/engine/handover.py): running plays waiting for a person, oldest
        # wait first, on `ix_plays_awaiting_human`.
        statement = statement.where(
            col(Play.awaiting_human_since).is_not(None), Play.state == PlayState.RUNNING
        )
    return page(statement, Play, query.cursor, query.limit, by=_order(query))


def _order(query: PlayQuery) -> str:
    return "awaiting_human_since" if query.awaiting == "human" else "created_at"


@operation(
    "List plays",
    tags=TAGS,
    description="The account's plays by start, oldest first (`?awaiting=human`: the inbox, "
    "oldest wait first), filtered by any of state, lead, playbook, rep, source and start time.",
    query=PlayQuery,
    response=PlayList,
    errors={422: "a filter is malformed, or `until` is not after `since`"},
)
async def list_plays(request: Request) -> JSONResponse:
    query = read_query(request, PlayQuery)
    if query.since is not None and query.until is not None and query.until <= query.since:
        raise ApiError(422, "invalid", "until: must be after since", "until")
    account = current_account(request)
    statement = list_statement(account.id, query)
    async with app_state(request)["sessions"]() as session:
        plays = list((await session.exec(statement)).all())
        public = await _public_many(session, plays)
    cursor = next_cursor(plays, query.limit, by=_order(query))
    data = [p.model_dump(mode="json") for p in public]
    return JSONResponse({"data": data, "next_cursor": cursor})


@operation(
    "Stop a play",
    tags=TAGS,
    description="Ends a running play (`stopped`) and cancels its texts not yet handed to Twilio.",
    response=PlayPublic,
    errors={409: "the play is not running"},
)
async def stop_play(request: Request) -> JSONResponse:
    account = current_account(request)
    async with transaction(app_state(request)["sessions"]) as session:
        play = await _account_play(session, account.id, request.path_params["play_id"])
        if play.state != PlayState.RUNNING:
            raise ApiError(409, "conflict", f"the play is {play.state}, not running")
        await session.exec(
            update(Message)
            .where(
                col(Message.play_id) == play.id,
                col(Message.account_id) == account.id,
                col(Message.status) == MessageStatus.QUEUED,
            )
            .values(status=MessageStatus.CANCELED, updated_at=now())
        )
        await record_activity(session, play, ActivityType.EVENT, "stopped", "stopped by API")
        end(session, play, PlayState.STOPPED, "stopped by API")
        public = await _detailed(session, play)
    return JSONResponse(public.model_dump(mode="json"))


@operation(
    "Create or update a lead",
    tags=["leads"],
    description="Creates or updates the lead; when one of its originators' origin has a source "
    "rule (origins compare case-insensitively), that rule's playbook starts at once with a rep "
    "assigned by the rule: 201 with `play_started: true`. When the lead already has a running "
    "play of that playbook, nothing starts: 200 with that play and `play_started: false`.",
    request=LeadCreate,
    example=PLAY_EXAMPLE["lead"],
    response=LeadStarted,
    status=201,
    extra_statuses={200: "the lead already had a running play of the rule's playbook"},
)
async def create_lead(request: Request) -> JSONResponse:
    lead_in = await read_json(request, LeadCreate)
    account = current_account(request)
    state = app_state(request)
    started: Play | None = None
    async with transaction(state["sessions"]) as session:
        # A rule's play runs its first step in this transaction, under the contact lock: taken
        # before the lead's row is written, in the order the jobs take them (and only then).
        rule = await _rule_for(session, account.id, [o.origin for o in lead_in.originators])
        version: int | None = None  # the rule's playbook's latest, asked with the upsert
        if rule is None:
            lead = await upsert_lead(session, account.id, lead_in)
        else:
            latest = Also(playbook_versions.LATEST_VERSION, {"playbook_id": rule.playbook_id})
            lead, version = await upsert_lead_asking(
                session, account.id, lead_in, latest, lock=True
            )
        rep = await assign_rep(session, rule) if rule is not None else None
        play: Play | None = None
        if rule is not None:
            try:
                started = play = await start_play(
                    session,
                    lead=lead,
                    playbook_id=rule.playbook_id,
                    settings=dict(rule.settings),
                    rep_id=rep.id if rep else None,
                    source_rule_id=rule.id,
                    version=version,  # None (no such playbook): start_play looks and refuses
                )
                if rep is not None:  # the round robin's rep hears of the lead now
                    await rep_notices.notify_rep(session, play, rep, "assigned")
            except RunningPlayExists as exc:
                play = await session.get(Play, exc.play_id)
            except (LookupError, ValueError) as exc:
                raise ApiError(
                    409, "conflict", f"source rule {rule.id} can't start: {exc}", "originators"
                ) from None
        [public_lead] = await public_leads(session, [lead])
        body = LeadStarted(
            lead=public_lead,
            play=await _with_next_action(session, play) if play else None,
            play_started=started is not None,
        )
    # 200 when the lead's running play is the old one: nothing started.
    already_running = play is not None and started is None
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if already_running else 201)


async def _rule_for(
    session: AsyncSession, account_id: str, origins: list[str]
) -> SourceRule | None:
    if not origins:
        return None
    keys = [origin_key(o) for o in origins]  # case-insensitive, like the rules' uniqueness
    rules = (
        await session.exec(
            select(SourceRule).where(
                SourceRule.account_id == account_id, col(SourceRule.origin_key).in_(keys)
            )
        )
    ).all()
    by_key = {rule.origin_key: rule for rule in rules}
    return next((by_key[k] for k in keys if k in by_key), None)


routes = [
    Route("/v1/plays", list_plays, methods=["GET"]),
    Route("/v1/plays", create_play, methods=["POST"]),
    Route("/v1/plays/{play_id}", get_play, methods=["GET"]),
    Route("/v1/plays/{play_id}/stop", stop_play, methods=["POST"]),
    Route("/v1/leads", create_lead, methods=["POST"]),
]
