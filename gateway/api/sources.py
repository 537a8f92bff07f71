"""`/v1/sources`: source rules ("API workflows"): every new lead from `origin` starts
`playbook_id`, with a rep assigned round robin over `rep_ids` or left to the business (`manual`).

At most one rule per origin in an account, origins compared case-insensitively ("everquote" is
EverQuote's): a second one is a 409 whose `existing_id` is the rule to change instead. A rule
keeps its origin as written; leads match it whatever the case of their originator's origin.
Settings must be ones the playbook declares (gateway/api/play_settings.py). `round_robin` needs
at least one rep; `manual` takes none. PATCH
replaces the fields given (`settings` as a whole) and re-checks the rule; the rotation
position survives a PATCH, and a clone starts its own.

`notify` says how the rep a lead is assigned to hears of it (the round robin's pick, or a
`POST /v1/leads/{id}/assign`, and again when the lead asks for a person): `{"sms": bool,
"email": bool}`, each through the gate (gateway/engine/rep_notices.py). A channel the rule
doesn't name is the playbook's `notify` (texts on, email off unless it says); the rule stores
and shows only what it names. Dumps use `exclude_none` for that (no other field is nullable).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.clock import now
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.gate import SOURCE_RULE_SETTING
from gateway.ids import new_id
from gateway.models import PlaybookRecord, Rep, SourceRule
from gateway.models.plays import origin_key
from gateway.playbooks.steps import IDENTIFIER_PATTERN
from gateway.reps import MANUAL, ROUND_ROBIN
from gateway.state import app_state, current_account

from .openapi import error_with, operation
from .play_settings import declared_settings, refuse_unknown
from .requests import read_json, read_query, validation_error

TAGS = ["sources"]
MAX_REPS = 100

Origin = Annotated[str, Field(min_length=1, max_length=100, examples=["EverQuote"])]
SettingName = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


def _scalar(value: Any) -> Any:
    if not isinstance(value, str | int | float | bool):
        raise ValueError("a setting is a string, number or boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")  # PostgreSQL's JSON has no NaN
    return value


SettingValue = Annotated[
    Any, AfterValidator(_scalar), WithJsonSchema({"type": ["string", "number", "boolean"]})
]
Settings = Annotated[
    dict[SettingName, SettingValue],
    Field(
        max_length=50,
        description="overrides of the playbook's settings for these plays: only settings the "
        "playbook (or a playbook it moves leads to) declares, and `max_consent_age_days`; "
        "any other name is a 422 with the closest declared one",
    ),
]


class Notify(BaseModel):
    """How the assigned rep is told of a lead (on assignment and on `talk_to_human`); a
    channel left out is the playbook's `notify` (by default texts, no email)."""

    model_config = ConfigDict(extra="forbid")

    sms: bool | None = Field(
        default=None,
        description="text the rep's phone, through the gate: the rep's own opt-out blocks it; "
        "quiet hours and caps don't apply (reps are staff, not consumers)",
    )
    email: bool | None = Field(
        default=None,
        description="email the rep's address (a rep without one gets none), through the gate: "
        "only the rep's own email opt-out blocks it; the email names the lead and its id",
    )


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    origin: Origin
    playbook_id: str = Field(min_length=1, max_length=64)
    distribution: Literal["round_robin", "manual"] = ROUND_ROBIN
    rep_ids: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list,
        max_length=MAX_REPS,
        validate_default=True,  # round_robin without reps must fail too
        description="the rotation, in order",
    )
    settings: Settings = Field(default_factory=dict)
    notify: Notify = Field(default_factory=Notify)

    @field_validator("rep_ids")
    @classmethod
    def _reps_fit_distribution(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # Fields validate in order, so a valid `distribution` is already in info.data.
        distribution = info.data.get("distribution")
        if len(set(value)) != len(value):
            raise ValueError("each rep at most once")
        if distribution == ROUND_ROBIN and not value:
            raise ValueError("round_robin needs at least one rep")
        if distribution == MANUAL and value:
            raise ValueError("manual distribution takes no reps")
        return value


class SourceUpdate(BaseModel):
    """Fields to replace; none may be null."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    origin: Origin | None = None
    playbook_id: str | None = Field(default=None, min_length=1, max_length=64)
    distribution: Literal["round_robin", "manual"] | None = None
    rep_ids: list[Annotated[str, Field(max_length=40)]] | None = Field(
        default=None, max_length=MAX_REPS
    )
    settings: Settings | None = None
    notify: Notify | None = None


class SourceCloneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    origin: Origin = Field(description="the new rule's origin")


class SourceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    origin: str | None = Field(default=None, max_length=100)


class SourcePublic(BaseModel):
    # Dumped with `exclude_none`: a `notify` channel the rule leaves to the playbook is absent.
    id: str
    origin: str
    playbook_id: str
    distribution: Literal["round_robin", "manual"]
    rep_ids: list[str]
    settings: dict[str, Any]
    notify: Notify
    created_at: datetime
    updated_at: datetime


class SourceList(BaseModel):
    data: list[SourcePublic]


def _checked(data: dict[str, Any]) -> SourceCreate:
    """Re-validate a whole rule (PATCH merges, clones): cross-field rules name the field."""
    try:
        return SourceCreate.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def find_rule(session: AsyncSession, account_id: str, rule_id: str) -> SourceRule:
    """The account's source rule, or 404."""
    rule = (
        await session.exec(
            select(SourceRule).where(SourceRule.id == rule_id, SourceRule.account_id == account_id)
        )
    ).first()
    if rule is None:
        raise ApiError(404, "not_found", "no such source rule")
    return rule


async def _check_references(session: AsyncSession, account_id: str, rule: SourceCreate) -> None:
    """The playbook and every rep must be the account's own."""
    playbook = (
        await session.exec(
            select(PlaybookRecord.id).where(
                PlaybookRecord.account_id == account_id, PlaybookRecord.id == rule.playbook_id
            )
        )
    ).first()
    if playbook is None:
        raise ApiError(
            422, "invalid", f"playbook_id: no playbook {rule.playbook_id!r}", "playbook_id"
        )
    declared = await declared_settings(session, account_id, rule.playbook_id)
    if declared is not None:
        refuse_unknown(rule.settings, declared[1] | {SOURCE_RULE_SETTING}, rule.playbook_id)
    known = set(
        (
            await session.exec(
                select(Rep.id).where(Rep.account_id == account_id, col(Rep.id).in_(rule.rep_ids))
            )
        ).all()
    )
    for index, rep_id in enumerate(rule.rep_ids):
        if rep_id not in known:
            raise ApiError(
                422, "invalid", f"rep_ids[{index}]: no rep {rep_id!r}", f"rep_ids[{index}]"
            )


async def _origin_taken(session: AsyncSession, account_id: str, origin: str) -> str | None:
    # Case-insensitive: "everquote" is taken when "EverQuote" has a rule.
    return (
        await session.exec(
            select(SourceRule.id).where(
                SourceRule.account_id == account_id, SourceRule.origin_key == origin_key(origin)
            )
        )
    ).first()


def _origin_conflict(origin: str, existing_id: str | None) -> JSONResponse:
    return error_with(
        409,
        "conflict",
        f"origin {origin!r} already has a source rule",
        "origin",
        existing_id=existing_id,
    )


async def _insert(request: Request, rule: SourceRule) -> Response:
    """Insert a new rule; an origin that has one is a 409, also when a race is lost at commit."""
    account_id, origin = rule.account_id, rule.origin
    try:
        async with transaction(app_state(request)["sessions"]) as session:
            taken = await _origin_taken(session, rule.account_id, rule.origin)
            if taken is not None:
                return _origin_conflict(rule.origin, taken)
            session.add(rule)
    except IntegrityError:
        return await _lost_race(request, account_id, origin)
    public = SourcePublic.model_validate(rule, from_attributes=True)
    return JSONResponse(public.model_dump(mode="json", exclude_none=True), status_code=201)


async def _lost_race(request: Request, account_id: str, origin: str) -> JSONResponse:
    async with app_state(request)["sessions"]() as session:
        taken = await _origin_taken(session, account_id, origin)
    return _origin_conflict(origin, taken)


@operation(
    "Create a source rule",
    tags=TAGS,
    request=SourceCreate,
    example={"origin": "EverQuote", "playbook_id": "quote-drip", "rep_ids": ["rep_01J9Z8Q4V6"]},
    response=SourcePublic,
    status=201,
    errors={409: "the origin already has a rule (`existing_id`)"},
)
async def create_source(request: Request) -> Response:
    body = await read_json(request, SourceCreate)
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        await _check_references(session, account_id, body)
    rule = SourceRule(id=new_id("src"), account_id=account_id, **body.model_dump(exclude_none=True))
    return await _insert(request, rule)


@operation("List source rules", tags=TAGS, query=SourceQuery, response=SourceList)
async def list_sources(request: Request) -> JSONResponse:
    query = read_query(request, SourceQuery)
    statement = select(SourceRule).where(SourceRule.account_id == current_account(request).id)
    if query.origin is not None:
        statement = statement.where(SourceRule.origin_key == origin_key(query.origin))
    async with app_state(request)["sessions"]() as session:
        rules = (
            await session.exec(statement.order_by(col(SourceRule.created_at), col(SourceRule.id)))
        ).all()
    listed = SourceList(
        data=[SourcePublic.model_validate(rule, from_attributes=True) for rule in rules]
    )
    return JSONResponse(listed.model_dump(mode="json", exclude_none=True))


@operation("Get a source rule", tags=TAGS, response=SourcePublic)
async def get_source(request: Request) -> JSONResponse:
    async with app_state(request)["sessions"]() as session:
        rule = await find_rule(session, current_account(request).id, request.path_params["rule_id"])
    public = SourcePublic.model_validate(rule, from_attributes=True)
    return JSONResponse(public.model_dump(mode="json", exclude_none=True))


@operation(
    "Change a source rule",
    tags=TAGS,
    description="Replaces the fields given (`settings` as a whole); the result is checked "
    "like a new rule.",
    request=SourceUpdate,
    example={"distribution": "manual", "rep_ids": []},
    response=SourcePublic,
    errors={409: "the new origin already has a rule (`existing_id`)"},
)
async def update_source(request: Request) -> Response:
    body = await read_json(request, SourceUpdate)
    for name in body.model_fields_set:
        if getattr(body, name) is None:
            raise ApiError(422, "invalid", f"{name}: may not be null", name)
    account_id = current_account(request).id
    try:
        # One transaction, changing only the rule's own fields: `cursor` moves under
        # concurrent assignments and must not be written back from a stale copy.
        async with transaction(app_state(request)["sessions"]) as session:
            rule = await find_rule(session, account_id, request.path_params["rule_id"])
            given = body.model_dump(exclude_unset=True)
            merged = _checked({**{n: getattr(rule, n) for n in SourceCreate.model_fields}, **given})
            await _check_references(session, account_id, merged)
            taken = await _origin_taken(session, account_id, merged.origin)
            if taken is not None and taken != rule.id:
                return _origin_conflict(merged.origin, taken)
            for name, value in merged.model_dump(exclude_none=True).items():
                setattr(rule, name, value)
            rule.updated_at = now()
            session.add(rule)
    except IntegrityError:
        return await _lost_race(request, account_id, merged.origin)
    public = SourcePublic.model_validate(rule, from_attributes=True)
    return JSONResponse(public.model_dump(mode="json", exclude_none=True))


@operation(
    "Clone a source rule for another origin",
    tags=TAGS,
    request=SourceCloneCreate,
    example={"origin": "SmartFinancial"},
    response=SourcePublic,
    status=201,
    errors={409: "the new origin already has a rule (`existing_id`)"},
)
async def clone_source(request: Request) -> Response:
    body = await read_json(request, SourceCloneCreate)
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        rule = await find_rule(session, account_id, request.path_params["rule_id"])
        copy = _checked({**SourcePublic.model_validate(rule, from_attributes=True).model_dump(
            include=set(SourceCreate.model_fields)
        ), "origin": body.origin})  # fmt: skip
        await _check_references(session, account_id, copy)
    clone = SourceRule(
        id=new_id("src"), account_id=account_id, **copy.model_dump(exclude_none=True)
    )
    return await _insert(request, clone)


@operation("Delete a source rule", tags=TAGS, status=204)
async def delete_source(request: Request) -> Response:
    async with transaction(app_state(request)["sessions"]) as session:
        rule = await find_rule(session, current_account(request).id, request.path_params["rule_id"])
        await session.delete(rule)
    return Response(status_code=204)


routes = [
    Route("/v1/sources", list_sources, methods=["GET"]),
    Route("/v1/sources", create_source, methods=["POST"]),
    Route("/v1/sources/{rule_id}", get_source, methods=["GET"]),
    Route("/v1/sources/{rule_id}", update_source, methods=["PATCH"]),
    Route("/v1/sources/{rule_id}", delete_source, methods=["DELETE"]),
    Route("/v1/sources/{rule_id}/clone", clone_source, methods=["POST"]),
]
