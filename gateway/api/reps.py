"""`/v1/reps`: the sales reps an account connects leads to (name, phone, email, availability).

Deleting a rep that a source rule still lists, or that a running play is assigned to, is
refused with 409 (and the blocking ids): silently changing a rule's rotation or orphaning a
live conversation is worse than asking the caller to update the rule or mark the rep
unavailable first (`PATCH {"available": false}` takes a rep out of every rotation at once).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.clock import now
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.leads import Email
from gateway.models import Play, PlayState, Rep, SourceRule
from gateway.phones import Phone
from gateway.state import app_state, current_account

from .openapi import error_with, operation
from .requests import read_json, read_query

TAGS = ["reps"]


class RepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    phone: Phone
    email: Email | None = None
    available: bool = True


class RepUpdate(BaseModel):
    """Fields to change; `email: null` clears the email."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: Phone | None = None
    email: Email | None = None
    available: bool | None = None


class RepQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: bool | None = Field(default=None, description="only reps with this availability")


class RepPublic(BaseModel):
    id: str
    name: str
    phone: str
    email: str | None
    available: bool
    created_at: datetime
    updated_at: datetime


class RepList(BaseModel):
    data: list[RepPublic]


async def find_rep(session: AsyncSession, account_id: str, rep_id: str) -> Rep:
    """The account's rep, or 404."""
    rep = (
        await session.exec(select(Rep).where(Rep.id == rep_id, Rep.account_id == account_id))
    ).first()
    if rep is None:
        raise ApiError(404, "not_found", "no such rep")
    return rep


@operation(
    "Add a rep",
    tags=TAGS,
    request=RepCreate,
    example={"name": "Dana Reyes", "phone": "+14155550102", "email": "dana@example.com"},
    response=RepPublic,
    status=201,
)
async def create_rep(request: Request) -> JSONResponse:
    body = await read_json(request, RepCreate)
    rep = Rep(id=new_id("rep"), account_id=current_account(request).id, **body.model_dump())
    async with transaction(app_state(request)["sessions"]) as session:
        session.add(rep)
    public = RepPublic.model_validate(rep, from_attributes=True)
    return JSONResponse(public.model_dump(mode="json"), status_code=201)


@operation("List reps", tags=TAGS, query=RepQuery, response=RepList)
async def list_reps(request: Request) -> JSONResponse:
    query = read_query(request, RepQuery)
    statement = select(Rep).where(Rep.account_id == current_account(request).id)
    if query.available is not None:
        statement = statement.where(Rep.available == query.available)
    async with app_state(request)["sessions"]() as session:
        reps = (await session.exec(statement.order_by(col(Rep.created_at), col(Rep.id)))).all()
    listed = RepList(data=[RepPublic.model_validate(rep, from_attributes=True) for rep in reps])
    return JSONResponse(listed.model_dump(mode="json"))


@operation("Get a rep", tags=TAGS, response=RepPublic)
async def get_rep(request: Request) -> JSONResponse:
    async with app_state(request)["sessions"]() as session:
        rep = await find_rep(session, current_account(request).id, request.path_params["rep_id"])
    return JSONResponse(RepPublic.model_validate(rep, from_attributes=True).model_dump(mode="json"))


@operation(
    "Change a rep",
    tags=TAGS,
    description="Only the fields given change; `email: null` clears the email. "
    "`available: false` takes the rep out of every round-robin rotation.",
    request=RepUpdate,
    example={"available": False},
    response=RepPublic,
)
async def update_rep(request: Request) -> JSONResponse:
    body = await read_json(request, RepUpdate)
    for name in ("name", "phone", "available"):
        if name in body.model_fields_set and getattr(body, name) is None:
            raise ApiError(422, "invalid", f"{name}: may not be null", name)
    async with transaction(app_state(request)["sessions"]) as session:
        rep = await find_rep(session, current_account(request).id, request.path_params["rep_id"])
        for name in body.model_fields_set:
            setattr(rep, name, getattr(body, name))
        rep.updated_at = now()
        session.add(rep)
    return JSONResponse(RepPublic.model_validate(rep, from_attributes=True).model_dump(mode="json"))


@operation(
    "Delete a rep",
    tags=TAGS,
    description="Refused (409) while a source rule lists the rep or a running play is "
    "assigned to it; remove it from the rules, or mark it unavailable, first.",
    status=204,
    errors={409: "a source rule lists the rep, or a running play is assigned to it"},
)
async def delete_rep(request: Request) -> Response:
    account_id = current_account(request).id
    async with transaction(app_state(request)["sessions"]) as session:
        rep = await find_rep(session, account_id, request.path_params["rep_id"])
        rules = (
            await session.exec(select(SourceRule).where(SourceRule.account_id == account_id))
        ).all()
        # rep_ids is a JSON list; the account has a handful of rules, so filter here.
        listed = [rule.id for rule in rules if rep.id in rule.rep_ids]
        if listed:
            return error_with(
                409,
                "conflict",
                f"source rules {', '.join(listed)} list this rep: remove it from them first",
                existing_id=listed[0],
            )
        playing = (
            await session.exec(
                select(Play.id).where(
                    Play.account_id == account_id,
                    Play.rep_id == rep.id,
                    Play.state == PlayState.RUNNING,
                )
            )
        ).first()
        if playing is not None:
            return error_with(
                409, "conflict", f"running play {playing} is assigned to this rep",
                existing_id=playing,
            )  # fmt: skip
        await session.delete(rep)
    return Response(status_code=204)


routes = [
    Route("/v1/reps", list_reps, methods=["GET"]),
    Route("/v1/reps", create_rep, methods=["POST"]),
    Route("/v1/reps/{rep_id}", get_rep, methods=["GET"]),
    Route("/v1/reps/{rep_id}", update_rep, methods=["PATCH"]),
    Route("/v1/reps/{rep_id}", delete_rep, methods=["DELETE"]),
]
