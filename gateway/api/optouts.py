"""`/v1/opt-outs`: the ledger for compliance officers: list, export, status, and manual entries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from gateway import optouts
from gateway.clock import Instant, now
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.exports import as_dict, encode
from gateway.models import Channel, LedgerEvent, LedgerSource
from gateway.phones import InvalidPhone, Phone, to_e164
from gateway.state import app_state, current_account

from .openapi import operation
from .requests import read_json, read_query


class LedgerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Instant | None = None
    until: Instant | None = None
    phone: Phone | None = None
    channel: Channel | None = None
    source: LedgerSource | None = Field(
        default=None, description="how the event was recorded (keyword, phrase, api, ...)"
    )

    def filters(self) -> optouts.LedgerFilter:
        if self.since and self.until and self.until <= self.since:
            raise ApiError(422, "invalid", "until: must be after since", "until")
        return optouts.LedgerFilter(self.since, self.until, self.phone, self.channel, self.source)


class ListQuery(LedgerQuery):
    cursor: str | None = Field(default=None, pattern=r"^[0-9]{1,18}$")
    limit: int = Field(default=100, ge=1, le=1000)


class ExportQuery(LedgerQuery):
    format: Literal["csv", "jsonl"] = "csv"


class OptOutCreate(BaseModel):
    """An opt-out the business took by other means (phone call, email, web form, in person)."""

    model_config = ConfigDict(extra="forbid")

    phone: Phone
    channel: Channel = Channel.API
    received_at: Instant | None = Field(
        default=None, description="when the lead asked; default now; not in the future"
    )
    text: str | None = Field(default=None, max_length=2000, description="the lead's words")
    actor: str | None = Field(default=None, max_length=200, description="who took it")
    note: str | None = Field(default=None, max_length=2000)


class OptOutPublic(BaseModel):
    """One opt-out ledger event with its confirmation text, as listed and exported."""

    id: int
    account_id: str
    phone: str
    event: LedgerEvent
    received_at: str
    local_time: str
    channel: Channel
    source: LedgerSource
    text: str | None
    rule: str | None
    keyword: str | None
    message_sid: str | None
    call_sid: str | None
    inbound_number: str | None
    actor: str | None
    note: str | None
    suppression_applied_at: str
    confirmation_sent_at: str | None
    confirmation_sid: str | None
    confirmation_body: str | None
    seconds_to_confirmation: float | None
    email: str | None = Field(
        default=None, description="the address, for an email's unsubscribe link (else null)"
    )


def _public(row: optouts.LedgerRow) -> OptOutPublic:
    # The fields of the CSV and JSON-lines export (gateway/exports.py), one answer for both.
    return OptOutPublic.model_validate(as_dict(row))


class LedgerPage(BaseModel):
    data: list[OptOutPublic]
    next_cursor: str | None


class OptOutStatus(BaseModel):
    phone: str
    status: Literal["opted_out", "subscribed"]
    since: str | None
    history: list[OptOutPublic]


@operation("List the opt-out ledger", tags=["opt-outs"], query=ListQuery, response=LedgerPage)
async def list_opt_outs(request: Request) -> JSONResponse:
    query = read_query(request, ListQuery)
    account = current_account(request)
    async with app_state(request)["sessions"]() as session:
        rows = await optouts.page(
            session,
            account.id,
            query.filters(),
            after_id=int(query.cursor or 0),
            limit=query.limit,
        )
    listed = LedgerPage(
        data=[_public(row) for row in rows],
        next_cursor=str(rows[-1].event.id) if len(rows) == query.limit else None,
    )
    return JSONResponse(listed.model_dump(mode="json"))


@operation(
    "Export the opt-out ledger (CSV or JSON lines)",
    tags=["opt-outs"],
    query=ExportQuery,
    response_media=("text/csv", "application/x-ndjson"),
)
async def export_opt_outs(request: Request) -> StreamingResponse:
    query = read_query(request, ExportQuery)
    account = current_account(request)
    rows = optouts.iterate(app_state(request)["sessions"], account.id, query.filters())
    stamp = now().strftime("%Y%m%dT%H%M%SZ")
    media = "text/csv; charset=utf-8" if query.format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        encode(rows, query.format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="opt-outs-{stamp}.{query.format}"'},
    )


@operation(
    "Record an opt-out taken by other means",
    tags=["opt-outs"],
    request=OptOutCreate,
    example={"phone": "+14155550101", "channel": "voice", "text": "please stop calling"},
    response=OptOutPublic,
    status=201,
)
async def create_opt_out(request: Request) -> JSONResponse:
    body = await read_json(request, OptOutCreate)
    if body.received_at is not None and body.received_at > now():
        raise ApiError(422, "invalid", "received_at: must not be in the future", "received_at")
    account = current_account(request)
    async with transaction(app_state(request)["sessions"]) as session:
        event = await optouts.record(
            session,
            account_id=account.id,
            phone=body.phone,
            event=LedgerEvent.OPT_OUT,
            channel=body.channel,
            source=LedgerSource.API,
            received_at=body.received_at,
            text=body.text,
            actor=body.actor,
            note=body.note,
        )
    public = _public(optouts.LedgerRow(event, None))
    return JSONResponse(public.model_dump(mode="json"), status_code=201)


@operation(
    "A phone's opt-out status and history",
    tags=["opt-outs"],
    response=OptOutStatus,
    errors={422: "the path is not a phone number (`field` is `phone`)"},
)
async def opt_out_status(request: Request) -> JSONResponse:
    try:
        phone = to_e164(request.path_params["phone"])
    except InvalidPhone as exc:
        raise ApiError(422, "invalid", f"phone: {exc}", "phone") from None
    account = current_account(request)
    filters = optouts.LedgerFilter(phone=phone)
    history = [
        _public(row)
        async for row in optouts.iterate(app_state(request)["sessions"], account.id, filters)
    ]
    current = history[-1] if history else None
    status = OptOutStatus(
        phone=phone,
        status="opted_out" if current and current.event == LedgerEvent.OPT_OUT else "subscribed",
        since=current.received_at if current else None,
        history=history,
    )
    return JSONResponse(status.model_dump(mode="json"))


routes = [
    Route("/v1/opt-outs", list_opt_outs, methods=["GET"]),
    Route("/v1/opt-outs", create_opt_out, methods=["POST"]),
    Route("/v1/opt-outs/export", export_opt_outs, methods=["GET"]),
    Route("/v1/opt-outs/{phone}", opt_out_status, methods=["GET"]),
]
