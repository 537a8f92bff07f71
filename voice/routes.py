"""Twilio's voice requests for party lines: call status, AMD, conference status, TwiML.

Each request is signature-checked (`verified_params`: PUBLIC_BASE_URL + path + raw query),
parsed into a machine event (a malformed one is a 400 that changes nothing) and applied under
the party line's row lock. Callbacks are claimed once before anything else (CallSid+CallStatus,
CallSid for AMD, ConferenceSid+SequenceNumber), so a redelivery is answered and ignored.
TwiML requests (the answer and whisper Urls, Gather actions) are not claimed: Twilio waits
for their answer, and the machine gives a repeated request the same answer.

Slow work (calls.create, ending or redirecting other calls) goes to `party_lines.run`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.claims import claim
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.state import app_state
from gateway.twilio_signature import verified_params
from voice import twiml
from voice.events import (
    AmdResult,
    CallStatusChanged,
    ConferenceStatus,
    Event,
    LeadDigits,
    Prompt,
    RepDigits,
)
from voice.jobs import reported
from voice.links import (
    AMD_PATH,
    ANSWER_PATH,
    CONFERENCE_PATH,
    INBOUND_PATH,
    LEAD_GATHER_PATH,
    REP_GATHER_PATH,
    STATUS_PATH,
    WHISPER_PATH,
)
from voice.runner import Runner

log = logging.getLogger(__name__)

INBOUND_MESSAGE = "Thanks for calling. Please reply to our text message and we will call you back."
Params = dict[str, str]


def _xml(document: str) -> Response:
    return Response(document, media_type="text/xml")


def _flat(params: dict[str, Any]) -> Params:
    return {key: value if isinstance(value, str) else value[0] for key, value in params.items()}


def _query(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not value:
        raise ApiError(400, "bad_request", f"missing query parameter {name}", name)
    return value


def _parse(build: Callable[[], Event]) -> Event:
    try:
        return build()
    except ValueError as exc:
        raise ApiError(400, "bad_request", str(exc), getattr(exc, "field", None)) from None


async def _apply(
    request: Request,
    event: Event,
    params: Params,
    *,
    claim_as: tuple[str, str] | None = None,
    request_call: str | None = None,
    default: Callable[[Runner], str] | None = None,
) -> Response:
    """Claim (callbacks), apply under the lock (staging the work it leaves), answer."""
    state = app_state(request)
    party_line_id = _query(request, "pl")
    reply: str | None = None
    async with transaction(state["sessions"]) as session:
        if claim_as is not None and not await claim(session, claim_as[0], claim_as[1], params):
            return Response(status_code=204)  # a redelivery: applied already
        runner = await Runner.load(session, party_line_id, state["settings"].base_url)
        if runner is None:
            log.warning("voice callback for unknown party line %s", party_line_id)
            return _xml(twiml.hangup()) if default is not None else Response(status_code=204)
        await runner.feed(event, request_call=request_call)
        await reported(runner)
        if default is not None:
            reply = runner.reply or default(runner)
    return _xml(reply) if reply is not None else Response(status_code=204)


async def call_status(request: Request) -> Response:
    params = _flat(await verified_params(request))
    leg = request.query_params.get("leg") or None
    event = _parse(lambda: CallStatusChanged.from_params(params, leg=leg))
    assert isinstance(event, CallStatusChanged)
    return await _apply(
        request, event, params, claim_as=("voice_status", f"{event.call_sid}:{event.status}")
    )


async def amd_status(request: Request) -> Response:
    params = _flat(await verified_params(request))
    leg = request.query_params.get("leg") or None
    event = _parse(lambda: AmdResult.from_params(params, leg=leg))
    assert isinstance(event, AmdResult)
    return await _apply(request, event, params, claim_as=("voice_amd", event.call_sid))


async def conference_status(request: Request) -> Response:
    params = _flat(await verified_params(request))
    event = _parse(lambda: ConferenceStatus.from_params(params))
    assert isinstance(event, ConferenceStatus)
    key = f"{event.conference_sid}:{event.sequence_number}"
    return await _apply(request, event, params, claim_as=("voice_conference", key))


async def lead_answer(request: Request) -> Response:
    params = _flat(await verified_params(request))
    leg = _query(request, "leg")
    event = _parse(lambda: CallStatusChanged.from_params(params, leg=leg))
    assert isinstance(event, CallStatusChanged)
    return await _apply(
        request,
        event,
        params,
        request_call=event.call_sid,
        default=lambda runner: runner.lead_document(leg),
    )


async def rep_whisper(request: Request) -> Response:
    params = _flat(await verified_params(request))
    leg = _query(request, "leg")
    event = _parse(lambda: CallStatusChanged.from_params(params, leg=leg))
    assert isinstance(event, CallStatusChanged)
    return await _apply(
        request,
        event,
        params,
        request_call=event.call_sid,
        default=lambda runner: runner.rep_document(leg),
    )


async def lead_gather(request: Request) -> Response:
    params = _flat(await verified_params(request))
    leg = _query(request, "leg")
    prompt = cast(Prompt, _query(request, "prompt"))
    event = _parse(lambda: LeadDigits.from_params(params, prompt=prompt, leg=leg))
    assert isinstance(event, LeadDigits)
    return await _apply(
        request, event, params, request_call=event.call_sid, default=lambda _: twiml.hangup()
    )


async def rep_gather(request: Request) -> Response:
    params = _flat(await verified_params(request))
    leg = _query(request, "leg")
    event = _parse(lambda: RepDigits.from_params(params, leg=leg))
    assert isinstance(event, RepDigits)
    return await _apply(
        request, event, params, request_call=event.call_sid, default=lambda _: twiml.hangup()
    )


async def inbound_call(request: Request) -> Response:
    """A lead calling our number: party lines are outbound only; point them to the text."""
    await verified_params(request)
    return _xml(twiml.hangup(INBOUND_MESSAGE))


routes = [
    Route(STATUS_PATH, call_status, methods=["POST"]),
    Route(AMD_PATH, amd_status, methods=["POST"]),
    Route(CONFERENCE_PATH, conference_status, methods=["POST"]),
    Route(ANSWER_PATH, lead_answer, methods=["POST"]),
    Route(WHISPER_PATH, rep_whisper, methods=["POST"]),
    Route(LEAD_GATHER_PATH, lead_gather, methods=["POST"]),
    Route(REP_GATHER_PATH, rep_gather, methods=["POST"]),
    Route(INBOUND_PATH, inbound_call, methods=["POST"]),
]
