"""`/v1/numbers`: the Twilio numbers an account sends from and receives on."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.db import transaction
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.models import NumberKind, SenderNumber
from gateway.phones import Phone
from gateway.state import app_state, current_account

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
    created_at: datetime


class NumberList(BaseModel):
    data: list[NumberPublic]


def _public(number: SenderNumber) -> dict[str, object]:
    return NumberPublic.model_validate(number, from_attributes=True).model_dump(mode="json")


@operation(
    "Register a sending number",
    tags=["numbers"],
    request=NumberCreate,
    response=NumberPublic,
    status=201,
    errors={409: "the number is already registered"},
)
async def create_number(request: Request) -> JSONResponse:
    body = await read_json(request, NumberCreate)
    account = current_account(request)
    state = app_state(request)
    number = SenderNumber(id=new_id("num"), account_id=account.id, **body.model_dump())
    try:
        async with transaction(state["sessions"]) as session:
            session.add(number)
    except IntegrityError:
        raise ApiError(409, "conflict", "number is already registered", "number") from None
    sandbox = state.get("sandbox")
    if sandbox is not None:
        base_url = state["settings"].base_url
        sandbox.add_number(
            number.number, sms_url=f"{base_url}/twilio/sms", voice_url=f"{base_url}/twilio/voice"
        )
    return JSONResponse(_public(number), status_code=201)


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
    return JSONResponse({"data": [_public(n) for n in numbers]})


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
    return Response(status_code=204)


routes = [
    Route("/v1/numbers", list_numbers, methods=["GET"]),
    Route("/v1/numbers", create_number, methods=["POST"]),
    Route("/v1/numbers/{number_id}", delete_number, methods=["DELETE"]),
]
