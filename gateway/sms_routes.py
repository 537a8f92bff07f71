"""Twilio's SMS routes: inbound texts (`/twilio/sms`) and status callbacks
(`/twilio/sms/status`). Each is signature-checked, claimed once and answered fast. An inbound
text is only appended: the `sms.inbox` job acts on it (gateway/jobs/sms_inbox.py). A status
callback is recorded in its request, and what the sms channel makes of it (a failed text) goes
to the engine in the route's transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.claims import append, claim
from gateway.db import transaction
from gateway.engine import lifecycle
from gateway.errors import ApiError
from gateway.jobs.sms_inbox import (
    CLAIM_KIND,
    INBOX,
    MAX_MEDIA_URLS,
    MAX_NUM_MEDIA,
    MAX_NUM_SEGMENTS,
    TEXT_FIELDS,
)
from gateway.models import Message
from gateway.sms.status import FROM_TWILIO, moved, moved_row
from gateway.sms.status_updates import FAILURES, after_move, apply_status
from gateway.state import app_state
from gateway.twilio_params import InvalidParameter, optional_count
from gateway.twilio_signature import required, verified_params
from gateway.work import SMS_INBOX, hand_off

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# A generous bound on Twilio's error codes (5 digits): a value past it is not from Twilio.
MAX_ERROR_CODE = 999_999


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


def _text(params: dict[str, Any], name: str) -> None:
    """A text parameter is a string, or strings (a repeated form key); a JSON body could hold
    anything else: 400 naming the field."""
    value = params.get(name, "")
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return
    raise ApiError(400, "bad_request", f"{name} must be text", name)


def _int(params: dict[str, Any], name: str, maximum: int) -> int | None:
    """A whole-number parameter (ASCII digits within range); 400 naming the field otherwise."""
    try:
        return optional_count(params, name, maximum=maximum)
    except InvalidParameter as exc:
        raise ApiError(400, "bad_request", str(exc), exc.field) from None


async def inbound_sms(request: Request) -> Response:
    """One durable append, then the answer: the text is acted on by the `sms.inbox` job
    (gateway/jobs/sms_inbox.py), so Twilio's request costs a signature check and one INSERT."""
    params = await verified_params(request)
    sid, _from, _to = required(params, "MessageSid", "From", "To")
    # Checked here, so that a value Twilio would never send is a 400 and nothing is stored
    # (the inbox job reads them later, when the request is long answered).
    num_media = _int(params, "NumMedia", MAX_NUM_MEDIA) or 0
    _int(params, "NumSegments", MAX_NUM_SEGMENTS)
    media = [f"MediaUrl{i}" for i in range(min(num_media, MAX_MEDIA_URLS))]
    for name in (*TEXT_FIELDS, *media):
        _text(params, name)
    sessions = app_state(request)["sessions"]
    if await append(sessions, CLAIM_KIND, sid, params):
        await hand_off(sessions, SMS_INBOX, INBOX)
    # else a redelivery: appended already
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
