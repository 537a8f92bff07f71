"""`/v1/numbers`: the Twilio numbers an account sends from and receives on."""

from __future__ import annotations

import asyncio
from datetime import datetime
from weakref import WeakKeyDictionary

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.account_settings import (
    ComplianceSettings,
    TwilioOptOutHandling,
    compliance_settings,
    twilio_opt_out_handling,
)
from gateway.accounts import lock_account
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.models import Account, MessagingService, NumberKind, SenderNumber
from gateway.models.messaging import SenderStatus
from gateway.number_ownership import OwnershipUnknown, twilio_refusal
from gateway.phones import Phone
from gateway.state import AppState, app_state, current_account

from .openapi import operation
from .requests import read_json


class NumberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: Phone
    kind: NumberKind = NumberKind.LONG_CODE
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")


class NumberPublic(BaseModel):
    id: str
    number: str
    kind: NumberKind
    messaging_service_sid: str | None
    status: SenderStatus = Field(
        description="`unavailable`: Twilio refused it as a sender (see `status_code`); texts "
        "for it are held and tried again until it works"
    )
    status_code: int | None
    created_at: datetime


class NumberList(BaseModel):
    data: list[NumberPublic]


# Numbers an account registers: a text sent alone reads them all with its gate's facts, a
# batch once. A pool larger than this belongs in a messaging service (Twilio picks the number).
MAX_NUMBERS = 100
# One answer for "another account has it" and "the Twilio account doesn't own it": a refusal
# must not tell an account that a number or service is in use elsewhere on this gateway.
NUMBER_UNAVAILABLE = ("number is not available to this account", "number")
SERVICE_UNAVAILABLE = (
    "messaging service is not available to this account",
    "messaging_service_sid",
)


def _unavailable(what: tuple[str, str]) -> ApiError:
    return ApiError(409, "unavailable", what[0], what[1])


async def _check_with_twilio(request: Request, body: NumberCreate) -> None:
    """Refuse a number (or service) the Twilio account we send with does not own. The built-in
    sandbox of `gateway run` sells any number: it is provisioned once registered."""
    state = app_state(request)
    if state.get("sandbox") is not None:
        return
    try:
        refusal = await twilio_refusal(state["settings"], body.number, body.messaging_service_sid)
    except OwnershipUnknown:
        raise ApiError(
            503, "twilio_unavailable", "could not check the number with Twilio; retry shortly"
        ) from None
    if refusal == "number":
        raise _unavailable(NUMBER_UNAVAILABLE)
    if refusal == "messaging_service_sid":
        raise _unavailable(SERVICE_UNAVAILABLE)


@operation(
    "Register a sending number",
    tags=["numbers"],
    request=NumberCreate,
    example={"number": "+14155550100", "kind": "long_code"},
    response=NumberPublic,
    status=201,
    errors={
        409: f"the account has {MAX_NUMBERS} numbers already, the number is already registered "
        "to this account, or the number or messaging "
        "service is not available to this account (not owned by the gateway's Twilio account, "
        "or registered to another account)",
        503: "Twilio could not be asked whether it owns the number",
    },
)
async def create_number(request: Request) -> JSONResponse:
    body = await read_json(request, NumberCreate)
    account = current_account(request)
    state = app_state(request)
    # Twilio first, whatever the database holds: the answer for another account's number comes
    # after the same lookup as for an unowned one.
    await _check_with_twilio(request, body)
    number = SenderNumber(id=new_id("num"), account_id=account.id, **body.model_dump())
    try:
        async with transaction(state["sessions"]) as session:
            await _claim(session, account.id, number)
    except IntegrityError:
        # A registration racing this one took the number or the service first.
        raise _unavailable(NUMBER_UNAVAILABLE) from None
    sandbox = state.get("sandbox")
    if sandbox is not None:
        base_url = state["settings"].base_url
        async with _sandbox_lock(sandbox), state["sessions"]() as session:
            handling = await _opt_out_handling(session, account.id)
            sandbox.add_number(
                number.number,
                sms_url=f"{base_url}/twilio/sms",
                voice_url=f"{base_url}/twilio/voice",
                messaging_service_sid=number.messaging_service_sid,
                **handling,
            )
    public = NumberPublic.model_validate(number, from_attributes=True)
    return JSONResponse(public.model_dump(mode="json"), status_code=201)


# The built-in sandbox's opt-out switches are set one change at a time, each from the account's
# setting read after its own commit: the last one set has seen every committed change, so a
# number registered while `PATCH /v1/account` changes the setting ends with the new value.
_sandbox_locks: WeakKeyDictionary[object, asyncio.Lock] = WeakKeyDictionary()


def _sandbox_lock(sandbox: object) -> asyncio.Lock:
    return _sandbox_locks.setdefault(sandbox, asyncio.Lock())


async def _opt_out_handling(session: AsyncSession, account_id: str) -> TwilioOptOutHandling:
    account = await session.get(Account, account_id)
    settings = ComplianceSettings() if account is None else compliance_settings(account)
    return twilio_opt_out_handling(settings)


async def sync_sandbox_opt_out_handling(state: AppState, account_id: str) -> None:
    """When the built-in sandbox stands in for Twilio, make its opt-out handling on the
    account's numbers what the account's `twilio_answers_default_keywords` says, so that a
    lead gets one confirmation (Twilio's or the gateway's), never both."""
    sandbox = state.get("sandbox")
    if sandbox is None:
        return
    async with _sandbox_lock(sandbox), state["sessions"]() as session:
        handling = await _opt_out_handling(session, account_id)
        query = select(SenderNumber.number).where(SenderNumber.account_id == account_id)
        for number in (await session.exec(query)).all():
            # Every registered number is the sandbox's (at start-up and on registration);
            # the check spares a settings change an error for one that is not.
            if number in sandbox.numbers:
                sandbox.set_opt_out_handling(number, **handling)


# `_claim`'s count, built once.
_NUMBERS_OF = (
    select(func.count())
    .select_from(SenderNumber)
    .where(SenderNumber.account_id == bindparam("account_id"))
)


async def _claim(session: AsyncSession, account_id: str, number: SenderNumber) -> None:
    """Add the number and claim its service for the account, or refuse without a trace."""
    await lock_account(session, account_id)  # the count below holds under a race
    holder = (
        await session.exec(
            select(SenderNumber.account_id).where(SenderNumber.number == number.number)
        )
    ).first()
    if holder == account_id:
        raise ApiError(409, "conflict", "number is already registered", "number")
    if holder is not None:
        raise _unavailable(NUMBER_UNAVAILABLE)
    count = (await session.exec(_NUMBERS_OF, params={"account_id": account_id})).one()
    if count >= MAX_NUMBERS:
        raise ApiError(
            409,
            "limit_reached",
            f"an account has at most {MAX_NUMBERS} numbers; delete one first, or send from a "
            "messaging service's pool",
        )
    sid = number.messaging_service_sid
    if sid is not None:
        service = await session.get(MessagingService, sid)
        if service is None:
            session.add(MessagingService(sid=sid, account_id=account_id))
        elif service.account_id != account_id:
            raise _unavailable(SERVICE_UNAVAILABLE)
    session.add(number)
    await session.flush()


@operation("List sending numbers", tags=["numbers"], response=NumberList)
async def list_numbers(request: Request) -> JSONResponse:
    account = current_account(request)
    async with app_state(request)["sessions"]() as session:
        query = (
            select(SenderNumber)
            .where(SenderNumber.account_id == account.id)
            .order_by(col(SenderNumber.created_at))
        )
        numbers = (await session.exec(query)).all()
    listed = NumberList(
        data=[NumberPublic.model_validate(n, from_attributes=True) for n in numbers]
    )
    return JSONResponse(listed.model_dump(mode="json"))


@operation("Remove a sending number", tags=["numbers"], status=204)
async def delete_number(request: Request) -> Response:
    account = current_account(request)
    async with transaction(app_state(request)["sessions"]) as session:
        number = (
            await session.exec(
                select(SenderNumber).where(
                    SenderNumber.id == request.path_params["number_id"],
                    SenderNumber.account_id == account.id,
                )
            )
        ).first()
        if number is None:
            raise ApiError(404, "not_found", "no such number")
        await session.delete(number)
        await _release_service(session, account.id, number.messaging_service_sid)
    return Response(status_code=204)


async def _release_service(session: AsyncSession, account_id: str, sid: str | None) -> None:
    """The account's last number of a service is gone: the service is free for another."""
    if sid is None:
        return
    await session.flush()
    left = (
        await session.exec(
            select(SenderNumber.id).where(
                SenderNumber.account_id == account_id, SenderNumber.messaging_service_sid == sid
            )
        )
    ).first()
    service = await session.get(MessagingService, sid)
    if left is None and service is not None and service.account_id == account_id:
        await session.delete(service)


routes = [
    Route("/v1/numbers", list_numbers, methods=["GET"]),
    Route("/v1/numbers", create_number, methods=["POST"]),
    Route("/v1/numbers/{number_id}", delete_number, methods=["DELETE"]),
]
