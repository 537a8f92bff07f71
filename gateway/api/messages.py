"""`/v1/messages`: the business's own one-off texts, through the same gate and pipeline, and
every message with its full status history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from compliance.gate import Purpose as GatePurpose
from gateway import commit_rows, gate
from gateway.clock import now
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.jobs import sms_send
from gateway.models import Lead, Message, MessageEvent, MessageStatus, Purpose
from gateway.phones import Phone
from gateway.sms.outbox import hold_for_claim, queue_message
from gateway.sms.status import note_event
from gateway.state import app_state, current_account
from gateway.work import SMS_SEND, stage

from .openapi import operation
from .pagination import next_cursor, page
from .requests import read_json, read_query

CONVERSATION = timedelta(hours=24)


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(default=None, max_length=40)
    phone: Phone | None = None
    body: str = Field(min_length=1, max_length=1600)

    @model_validator(mode="after")
    def _one_recipient(self) -> MessageCreate:
        if (self.lead_id is None) == (self.phone is None):
            raise ValueError("give exactly one of lead_id and phone")
        return self


class MessageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(default=None, max_length=40)
    phone: Phone | None = None
    cursor: str | None = Field(default=None, max_length=80)
    limit: int = Field(default=50, ge=1, le=200)


class EventPublic(BaseModel):
    status: str
    at: datetime
    error_code: int | None
    detail: str | None


class MessagePublic(BaseModel):
    id: str
    lead_id: str | None
    direction: str
    phone: str
    from_number: str | None
    to_number: str | None
    body: str
    media: list[str]
    purpose: str
    reason: str
    status: str
    gate_reason: str | None
    send_after: datetime | None
    twilio_sid: str | None
    error_code: int | None
    error_message: str | None
    num_segments: int | None
    encoding: str | None
    notice_decision: str | None
    notice: str | None
    notice_segments: int | None
    created_at: datetime
    sent_at: datetime | None
    history: list[EventPublic]


class MessageList(BaseModel):
    data: list[MessagePublic]
    next_cursor: str | None


FROM_ROW = [name for name in MessagePublic.model_fields if name not in ("phone", "history")]


async def _with_history(session: AsyncSession, messages: list[Message]) -> list[MessagePublic]:
    """Messages as the API shows them, each with its status history (one query for all)."""
    await commit_rows.write_now(session)  # the history this transaction noted so far
    ids = [m.id for m in messages]
    events = (
        await session.exec(
            select(MessageEvent)
            .where(col(MessageEvent.message_id).in_(ids))
            .order_by(col(MessageEvent.id))
        )
    ).all()
    history: dict[str, list[EventPublic]] = {i: [] for i in ids}
    for event in events:
        history[event.message_id].append(EventPublic.model_validate(event, from_attributes=True))
    return [
        MessagePublic.model_validate(
            {
                **{name: getattr(m, name) for name in FROM_ROW},
                "phone": m.lead_phone,
                "history": history[m.id],
            }
        )
        for m in messages
    ]


@operation(
    "Send a one-off text",
    tags=["messages"],
    description="Through the compliance gate and the send pipeline; `status` says whether it "
    "is already `sending` (claimed by this request, whose process sends it next), `queued` "
    "for a worker, deferred (`send_after`) or blocked (`gate_reason`).",
    request=MessageCreate,
    example={"phone": "+14155550101", "body": "Hi Ana, your quote is ready."},
    response=MessagePublic,
    status=201,
    errors={404: "`lead_id` names no lead of this account"},
)
async def create_message(request: Request) -> JSONResponse:
    body = await read_json(request, MessageCreate)
    account = current_account(request)
    state = app_state(request)
    async with transaction(state["sessions"]) as session:
        lead: Lead | None
        if body.lead_id is not None:
            lead = (
                await session.exec(
                    select(Lead).where(Lead.id == body.lead_id, Lead.account_id == account.id)
                )
            ).first()
            if lead is None:
                raise ApiError(404, "not_found", "no such lead", "lead_id")
            phone = lead.phone
        else:
            assert body.phone is not None
            phone = body.phone
            lead = (
                await session.exec(
                    select(Lead).where(Lead.account_id == account.id, Lead.phone == phone)
                )
            ).first()
        purpose = await _purpose(session, account.id, phone)
        hold_for_claim(session)  # written by its claim below, or after its gate
        message = await queue_message(
            session,
            account_id=account.id,
            phone=phone,
            body=body.body,
            purpose=purpose,
            reason="manual",
            lead_id=lead.id if lead else None,
        )
        # Sent by this process once this commits: gated and claimed now, as its job would
        # (`sms_send.claim_staged`). Otherwise the gate decides again when the job sends, and
        # asking it now tells the caller at once.
        if message.id not in await sms_send.claim_staged(session, account):
            decision = await gate.decide(
                session,
                account,
                phone,
                channel="sms",
                purpose=cast(GatePurpose, str(purpose)),
                lead=lead,
            )
            if decision.action == "block":
                message.status, message.gate_reason = MessageStatus.BLOCKED, decision.reason
                message.error_message = decision.detail or decision.reason
                note_event(session, message.id, "blocked", detail=decision.reason)
            elif decision.action == "defer":
                message.send_after, message.gate_reason = decision.until, decision.reason
                stage(session, SMS_SEND, message.id, at=decision.until)
                note_event(session, message.id, "deferred", detail=decision.detail)
            session.add(message)
            await session.flush()
        [public] = await _with_history(session, [message])
    return JSONResponse(public.model_dump(mode="json"), status_code=201)


async def _purpose(session: AsyncSession, account_id: str, phone: str) -> Purpose:
    """A text within 24 hours of the lead's last message continues a conversation."""
    last_inbound = await gate.last_inbound_at(session, account_id, phone)
    if last_inbound is not None and now() - last_inbound < CONVERSATION:
        return Purpose.REPLY
    return Purpose.INITIATED


@operation(
    "List messages with their status history",
    tags=["messages"],
    query=MessageQuery,
    response=MessageList,
)
async def list_messages(request: Request) -> JSONResponse:
    query = read_query(request, MessageQuery)
    account = current_account(request)
    statement = select(Message).where(Message.account_id == account.id)
    if query.lead_id is not None:
        statement = statement.where(Message.lead_id == query.lead_id)
    if query.phone is not None:
        statement = statement.where(Message.lead_phone == query.phone)
    statement = page(statement, Message, query.cursor, query.limit)
    async with app_state(request)["sessions"]() as session:
        messages = list((await session.exec(statement)).all())
        listed = MessageList(
            data=await _with_history(session, messages),
            next_cursor=next_cursor(messages, query.limit),
        )
    return JSONResponse(listed.model_dump(mode="json"))


@operation("Get a message", tags=["messages"], response=MessagePublic)
async def get_message(request: Request) -> JSONResponse:
    account = current_account(request)
    async with app_state(request)["sessions"]() as session:
        message = (
            await session.exec(
                select(Message).where(
                    Message.id == request.path_params["message_id"],
                    Message.account_id == account.id,
                )
            )
        ).first()
        if message is None:
            raise ApiError(404, "not_found", "no such message")
        [public] = await _with_history(session, [message])
    return JSONResponse(public.model_dump(mode="json"))


routes = [
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages", create_message, methods=["POST"]),
    Route("/v1/messages/{message_id}", get_message, methods=["GET"]),
]
