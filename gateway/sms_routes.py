"""Twilio's SMS routes: inbound texts (`/twilio/sms`) and status callbacks
(`/twilio/sms/status`). Each is signature-checked, its parameters checked (a value Twilio would
never send is a 400 and nothing is stored), appended once as a pending claim and answered: the
`sms.inbox` and `sms.statuses` jobs act on what was appended (gateway/jobs/claim_batches.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.claims import append
from gateway.errors import ApiError
from gateway.jobs import sms_statuses as statuses
from gateway.jobs.sms_inbox import (
    CLAIM_KIND,
    INBOX,
    MAX_MEDIA_URLS,
    MAX_NUM_MEDIA,
    MAX_NUM_SEGMENTS,
    TEXT_FIELDS,
)
from gateway.state import app_state
from gateway.twilio_params import InvalidParameter, optional_count
from gateway.twilio_signature import required, verified_params
from gateway.work import SMS_INBOX, SMS_STATUSES, Kind, hand_off

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


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


async def _append(
    request: Request,
    claim_kind: str,
    key: str,
    params: dict[str, Any],
    *,
    job: tuple[Kind, str],
) -> None:
    """The request's one durable write: the webhook appended as a pending claim, and the job
    that acts on it handed to Redis. A redelivery conflicts with it: appended already."""
    sessions = app_state(request)["sessions"]
    if await append(sessions, claim_kind, key, params):
        await hand_off(sessions, *job)


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
    await _append(request, CLAIM_KIND, sid, params, job=(SMS_INBOX, INBOX))
    return _twiml()


async def sms_status(request: Request) -> Response:
    """One durable append, then the answer, as for an inbound text: the callback is acted on by
    the `sms.statuses` job (gateway/jobs/sms_statuses.py)."""
    params = await verified_params(request)
    sid, status_text = required(params, "MessageSid", "MessageStatus")
    _int(params, "ErrorCode", statuses.MAX_ERROR_CODE)  # a 400 here, not a failure later
    # The text it reports on, from the callback URL we gave Twilio (signed with the rest); set
    # even when absent, so that a body can never supply it.
    params = {**params, statuses.MESSAGE_ID: request.query_params.get(statuses.MESSAGE_ID)}
    key = f"{sid}:{status_text}"
    job = (SMS_STATUSES, statuses.STATUSES)
    await _append(request, statuses.CLAIM_KIND, key, params, job=job)
    return Response(status_code=204)


routes = [
    Route("/twilio/sms", inbound_sms, methods=["POST"]),
    Route("/twilio/sms/status", sms_status, methods=["POST"]),
]
