"""`/v1/leads`: read leads (with originators and consent evidence), find them by phone or
originator, and change their fields. `POST /v1/leads` (which starts a source rule's playbook)
lives with the plays.

PATCH semantics: a field given replaces the stored value and `null` clears it;
`additional_info` merges instead: keys given replace stored ones, a key given as `null` is
deleted, keys not given stay. A running play reads the lead when it acts, so it sees the
new values.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.clock import now
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.leads import (
    AdditionalInfo,
    Email,
    LeadPublic,
    Name,
    PostalCode,
    UsState,
    check_additional_info,
    merge_additional_info,
    public_leads,
)
from gateway.models import Lead, LeadOriginator
from gateway.phones import Phone
from gateway.state import app_state, current_account

from .openapi import operation
from .pagination import next_cursor, page
from .requests import read_json, read_query

TAGS = ["leads"]


class LeadUpdate(BaseModel):
    """Fields to change; null clears one. `additional_info` merges (null deletes a key)."""

    model_config = ConfigDict(extra="forbid")

    first_name: Name | None = None
    last_name: Name | None = None
    email: Email | None = None
    state: UsState | None = None
    postal_code: PostalCode | None = None
    additional_info: AdditionalInfo | None = None

    @field_validator("additional_info", mode="before")
    @classmethod
    def _object(cls, value: object) -> object:
        if value is None:
            raise ValueError("must be an object; to delete a key, give it as null")
        return value


class LeadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone | None = None
    origin: str | None = Field(default=None, max_length=100, description="leads from this source")
    key: str | None = Field(default=None, max_length=200, description="the source's id (origin)")
    cursor: str | None = Field(default=None, max_length=80)
    limit: int = Field(default=50, ge=1, le=200)


class LeadList(BaseModel):
    data: list[LeadPublic]
    next_cursor: str | None


async def find_lead(session: AsyncSession, account_id: str, lead_id: str) -> Lead:
    """The account's lead, or 404."""
    lead = (
        await session.exec(select(Lead).where(Lead.id == lead_id, Lead.account_id == account_id))
    ).first()
    if lead is None:
        raise ApiError(404, "not_found", "no such lead")
    return lead


@operation("Get a lead", tags=TAGS, response=LeadPublic)
async def get_lead(request: Request) -> JSONResponse:
    async with app_state(request)["sessions"]() as session:
        lead = await find_lead(session, current_account(request).id, request.path_params["lead_id"])
        body = (await public_leads(session, [lead]))[0]
    return JSONResponse(body.model_dump(mode="json"))


@operation(
    "Find leads",
    tags=TAGS,
    description="By phone, by originator (`origin`, optionally with `key`), or all; oldest "
    "first. Pass `next_cursor` back as `cursor` for the next page.",
    query=LeadQuery,
    response=LeadList,
)
async def list_leads(request: Request) -> JSONResponse:
    query = read_query(request, LeadQuery)
    if query.key is not None and query.origin is None:
        raise ApiError(422, "invalid", "key: give origin with key", "key")
    account_id = current_account(request).id
    statement = select(Lead).where(Lead.account_id == account_id)
    if query.phone is not None:
        statement = statement.where(Lead.phone == query.phone)
    if query.origin is not None:
        matching = select(LeadOriginator.lead_id).where(
            LeadOriginator.account_id == account_id, LeadOriginator.origin == query.origin
        )
        if query.key is not None:
            matching = matching.where(LeadOriginator.key == query.key)
        statement = statement.where(col(Lead.id).in_(matching))
    statement = page(statement, Lead, query.cursor, query.limit)
    async with app_state(request)["sessions"]() as session:
        leads = list((await session.exec(statement)).all())
        data = await public_leads(session, leads)
    cursor = next_cursor(leads, query.limit)
    return JSONResponse(
        {"data": [lead.model_dump(mode="json") for lead in data], "next_cursor": cursor}
    )


@operation(
    "Change a lead",
    tags=TAGS,
    description="A field given replaces the stored value (`null` clears it). `additional_info` "
    "merges: keys given replace stored ones, a key given as `null` is deleted.",
    request=LeadUpdate,
    example={"first_name": "Ana", "state": "TX", "additional_info": {"vehicle": "2019 Civic"}},
    response=LeadPublic,
)
async def update_lead(request: Request) -> JSONResponse:
    body = await read_json(request, LeadUpdate)
    async with transaction(app_state(request)["sessions"]) as session:
        lead = await find_lead(session, current_account(request).id, request.path_params["lead_id"])
        for name in body.model_fields_set - {"additional_info"}:
            setattr(lead, name, getattr(body, name))
        if body.additional_info is not None:
            merged = merge_additional_info(lead.additional_info, body.additional_info)
            try:
                lead.additional_info = check_additional_info(merged)
            except ValueError as exc:
                raise ApiError(
                    422, "invalid", f"additional_info: {exc}", "additional_info"
                ) from None
        lead.updated_at = now()
        session.add(lead)
        await session.flush()
        public = (await public_leads(session, [lead]))[0]
    return JSONResponse(public.model_dump(mode="json"))


routes = [
    Route("/v1/leads", list_leads, methods=["GET"]),
    Route("/v1/leads/{lead_id}", get_lead, methods=["GET"]),
    Route("/v1/leads/{lead_id}", update_lead, methods=["PATCH"]),
]
