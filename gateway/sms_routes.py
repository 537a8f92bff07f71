"""Twilio's SMS routes: inbound texts (`/twilio/sms`) and status callbacks
(`/twilio/sms/status`). Each is signature-checked, claimed once, recorded, and answered fast;
sending is left to jobs. What the sms channel makes of a report (a STOP, a failed text) goes
to the engine in the route's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.claims import claim
from gateway.clock import now
from gateway.db import column_values, transaction
from gateway.engine import lifecycle
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.models import (
    Account,
    Direction,
    Lead,
    Message,
    MessageStatus,
    MessagingService,
    Purpose,
    SenderNumber,
)
from gateway.phones import InvalidPhone, to_e164
from gateway.sms.keyword_replies import handle as handle_keywords
from gateway.sms.status import FROM_TWILIO, moved, moved_row, write_event
from gateway.sms.status_updates import FAILURES, after_move, apply_status
from gateway.state import app_state
from gateway.twilio_params import InvalidParameter, optional_count
from gateway.twilio_signature import required, verified_params
from gateway.work import PLAY_REPLY, stage

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Generous bounds on Twilio's numbers (10 media, 10 segments for 1,600 characters, 5-digit
# error codes): a value past them is not from Twilio.
MAX_NUM_MEDIA = 100
MAX_NUM_SEGMENTS = 1000
MAX_ERROR_CODE = 999_999


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name, "")
    return value if isinstance(value, str) else " ".join(value)


def _int(params: dict[str, Any], name: str, maximum: int) -> int | None:
    """A whole-number parameter (ASCII digits within range); 400 naming the field otherwise."""
    try:
        return optional_count(params, name, maximum=maximum)
    except InvalidParameter as exc:
        raise ApiError(400, "bad_request", str(exc), exc.field) from None


async def _sender(
    session: AsyncSession, params: dict[str, Any], to: str
) -> tuple[SenderNumber, Account] | None:
    """The number the text came in on and its account, in one query (this runs per text).

    Routing never guesses: only a registered `To` routes (never the service SID alone, which
    once sent a lead's STOP to another account), and a `MessagingServiceSid` that another
    account registered contradicts it, so the text goes nowhere."""
    service = _text(params, "MessagingServiceSid")
    found = (await session.exec(_SENDER, params={"to": to, "service": service})).first()
    if found is None:
        return None
    number, account, service_owner = found
    if service_owner is not None and service_owner != account.id:
        log.warning(
            "inbound sms to %s (account %s) names messaging service %s of account %s: not routed",
            to,
            account.id,
            service,
            service_owner,
        )
        return None
    return number, account


# The inbound route's statements, built once (it runs per text).
_SENDER = (
    select(SenderNumber, Account, MessagingService.account_id)
    .join(Account, col(Account.id) == col(SenderNumber.account_id))
    .outerjoin(MessagingService, col(MessagingService.sid) == bindparam("service"))
    .where(col(SenderNumber.number) == bindparam("to"))
)
_LEAD_ID = select(Lead.id).where(
    col(Lead.account_id) == bindparam("account_id"), col(Lead.phone) == bindparam("phone")
)
# Core, not the ORM's unit of work: its flush was a fifth of the route's CPU.
_MESSAGES = Message.__table__  # type: ignore[attr-defined]
_INSERT_MESSAGE = insert(_MESSAGES)
_DISPATCHED = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("message_id"))
    .values(dispatched_at=bindparam("moment"))
)


async def inbound_sms(request: Request) -> Response:
    params = await verified_params(request)
    sid, from_raw, to = required(params, "MessageSid", "From", "To")
    body = _text(params, "Body")
    num_media = _int(params, "NumMedia", MAX_NUM_MEDIA)
    num_segments = _int(params, "NumSegments", MAX_NUM_SEGMENTS)
    media = [_text(params, f"MediaUrl{i}") for i in range(min(num_media or 0, 10))]
    state = app_state(request)
    async with transaction(state["sessions"], brief=True) as session:
        if not await claim(session, "sms_in", sid, params):
            return _twiml()  # a redelivery: processed already
        found = await _sender(session, params, to)
        if found is None:
            log.warning("inbound sms sid=%s to unregistered number %s: stored as a claim", sid, to)
            return _twiml()
        _number, account = found
        try:
            phone = to_e164(from_raw)
        except InvalidPhone:
            phone = from_raw[:20]  # short codes and alphanumeric senders are kept as they came
        lead_id = (
            await session.exec(_LEAD_ID, params={"account_id": account.id, "phone": phone})
        ).first()
        message = Message(
            id=new_id("msg"),
            account_id=account.id,
            lead_id=lead_id,
            lead_phone=phone,
            direction=Direction.INBOUND,
            from_number=phone,
            to_number=to,
            body=body[:1600],
            media=media,
            purpose=Purpose.REPLY,
            reason="inbound",
            status=MessageStatus.RECEIVED,
            twilio_sid=sid,
            num_segments=num_segments,
        )
        await session.exec(_INSERT_MESSAGE, params=column_values(message))
        await write_event(session, message.id, MessageStatus.RECEIVED)
        result = await handle_keywords(
            session,
            account,
            phone=phone,
            text=body,
            message_sid=sid,
            inbound_number=to,
            lead_id=lead_id,
            opt_out_type=_text(params, "OptOutType") or None,
        )
        if result.kind == "opt_out":
            await lifecycle.on_opt_out(session, account.id, phone)
        if result.kind is None and lead_id is not None:
            stage(session, PLAY_REPLY, message.id)
        else:  # no reply owed: the sweep of undispatched replies passes it by
            await session.exec(_DISPATCHED, params={"message_id": message.id, "moment": now()})
        log.info(
            "inbound sms sid=%s account=%s lead=%s keyword=%s%s",
            sid,
            account.id,
            lead_id,
            result.kind,
            "" if lead_id else " (unknown number)",
        )
    return _twiml()


async def sms_status(request: Request) -> Response:
    params = await verified_params(request)
    sid, status_text = required(params, "MessageSid", "MessageStatus")
    status = FROM_TWILIO.get(status_text.lower())
    error_code = _int(params, "ErrorCode", MAX_ERROR_CODE)
    message_id = request.query_params.get("message_id")
    state = app_state(request)
    async with transaction(state["sessions"], brief=True) as session:
        if not await claim(session, "sms_status", f"{sid}:{status_text}", params):
            return Response(status_code=204)
        # The common case, a status that moves our text forward, is one UPDATE (which returns
        # the row where a failure needs it). Anything else (a late status, no such row, a SID
        # alone) reads the row as below.
        if message_id and status in FAILURES:
            row = await moved_row(
                session, message_id, status, error_code=error_code, twilio_sid=sid
            )
            if row is not None:
                applied = await after_move(session, row, status, error_code)
                await lifecycle.on_text(session, row, applied.outcome)
                return Response(status_code=204)
        elif (
            message_id
            and status is not None
            and await moved(session, message_id, status, error_code=error_code, twilio_sid=sid)
        ):
            return Response(status_code=204)
        message = await session.get(Message, message_id) if message_id else None
        if message is None:
            query = select(Message).where(Message.twilio_sid == sid)
            message = (await session.exec(query)).first()
        if message is None or status is None:
            log.warning("status %s for unknown message sid=%s", status_text, sid)
            return Response(status_code=204)
        # A SID is written once: a message that has one needs no UPDATE to set it (one
        # statement fewer on every callback of every text we send).
        new_sid = sid if message.twilio_sid is None else None
        applied = await apply_status(
            session, message, status, error_code=error_code, twilio_sid=new_sid
        )
        await lifecycle.on_text(session, message, applied.outcome)
    return Response(status_code=204)


routes = [
    Route("/twilio/sms", inbound_sms, methods=["POST"]),
    Route("/twilio/sms/status", sms_status, methods=["POST"]),
]
