"""The dev phone: `/console/dev-phone`, a lead's or a rep's handset played from the page while
the built-in Twilio sandbox stands in for Twilio. It does what a phone does, through the
sandbox, as a real phone would: its texts arrive at the gateway as signed inbound webhooks,
its calls are answered (as a person or as voicemail), keyed and hung up in the sandbox, and the
gateway hears of it by the same callbacks it gets from Twilio. The clock can be moved forward
(gateway/dev_clock.py) to watch a drip.

Without the built-in sandbox (Twilio credentials are set, as production requires) every route
here answers 404: there is no phone to play. Only the account's own numbers show: texts and
calls between the phone and another account's numbers are not listed or touched.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlencode

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway import dev_clock
from gateway.clock import now
from gateway.console import web
from gateway.models import Lead, Rep, SenderNumber
from gateway.phones import InvalidPhone, to_e164
from gateway.state import app_state
from twilio_sandbox import Sandbox
from twilio_sandbox.calls import Call
from twilio_sandbox.wire import TwilioError

SKIPS = {"3600": "an hour", "86400": "a day"}
PHONE_CHOICES = 200
KEYS = "0123456789*#"
ACTIONS = ("clock", "text", "hand", "human", "machine", "press", "hangup")


def _sandbox(request: Request) -> Sandbox | None:
    return app_state(request).get("sandbox")


def _not_found(request: Request) -> Response:
    return Response("404 Not Found", status_code=404, media_type="text/plain")


async def _numbers(request: Request, account_id: str) -> list[str]:
    async with app_state(request)["sessions"]() as db:
        query = select(SenderNumber.number).where(SenderNumber.account_id == account_id)
        return sorted((await db.exec(query)).all())


async def _choices(request: Request, account_id: str) -> list[tuple[str, str]]:
    """(phone, who) for the account's leads and reps: the phones worth picking."""
    async with app_state(request)["sessions"]() as db:
        reps = (
            await db.exec(select(Rep).where(Rep.account_id == account_id).limit(PHONE_CHOICES))
        ).all()
        leads = (
            await db.exec(
                select(Lead)
                .where(Lead.account_id == account_id)
                .order_by(col(Lead.created_at).desc())
                .limit(PHONE_CHOICES)
            )
        ).all()
    found = [(rep.phone, f"rep {rep.name}") for rep in reps]
    for lead in leads:
        name = " ".join(part for part in (lead.first_name, lead.last_name) if part)
        found.append((lead.phone, f"lead {name}".strip()))
    return found


def _calls(sandbox: Sandbox, phone: str, ours: list[str]) -> list[Call]:
    """The phone's calls with the account's numbers, newest first."""
    found = [
        call
        for call in sandbox.calls.calls.values()
        if (call.to == phone and call.from_ in ours) or (call.from_ == phone and call.to in ours)
    ]
    return sorted(found, key=lambda call: call.date_created, reverse=True)


def _phone_of(raw: str) -> str | None:
    try:
        return to_e164(raw) if raw.strip() else None
    except InvalidPhone:
        return None


async def _state(request: Request, sandbox: Sandbox, account_id: str, phone: str | None) -> Any:
    ours = await _numbers(request, account_id)
    context: dict[str, Any] = {
        "phone": phone,
        "ours": ours,
        "sandbox_now": sandbox.now().isoformat(timespec="seconds"),
        "gateway_now": now().isoformat(timespec="seconds"),
        "texts": [],
        "calls": [],
        "by_hand": False,
    }
    if phone is None:
        return context
    texts = [m for m in sandbox.messaging.conversation(phone) if {m.to, m.from_} & set(ours)]
    context["texts"] = [
        {
            "sid": m.sid,
            "body": m.body,
            "status": m.status,
            "mine": m.from_ == phone,
            "other": m.to if m.from_ == phone else m.from_,
            "at": m.date_created.isoformat(timespec="seconds"),
        }
        for m in texts
    ]
    context["calls"] = _calls(sandbox, phone, ours)
    context["by_hand"] = sandbox.phones.get(phone).script.by_hand
    last_ours = [t["other"] for t in context["texts"]]
    context["reply_to"] = last_ours[-1] if last_ours else (ours[0] if ours else "")
    return context


async def page(request: Request) -> Response:
    sandbox = _sandbox(request)
    if sandbox is None:
        return _not_found(request)
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    raw = request.query_params.get("phone", "")
    phone = _phone_of(raw)
    context = await _state(request, sandbox, found.account.id, phone)
    context.update(
        await web.base_context(request, found),
        typed=raw,
        phone_error=None if phone or not raw.strip() else "That is not a phone number.",
        choices=await _choices(request, found.account.id),
        skips=SKIPS,
        clock_moves=bool(app_state(request).get("worker_here")),
        notice=request.query_params.get("notice", ""),
        live_src=f"/console/dev-phone/live?{urlencode({'phone': phone})}" if phone else "",
    )
    return web.page(request, "dev_phone.html", context)


async def live(request: Request) -> Response:
    """The page's changing part (texts, calls, clocks), fetched again by static/live.js."""
    sandbox = _sandbox(request)
    if sandbox is None:
        return _not_found(request)
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    phone = _phone_of(request.query_params.get("phone", ""))
    context = await _state(request, sandbox, found.account.id, phone)
    context |= await web.base_context(request, found)  # the forms' CSRF token
    return web.page(request, "dev_phone_live.html", context)


def _back(phone: str, notice: str = "") -> RedirectResponse:
    query = ({"phone": phone} if phone else {}) | ({"notice": notice} if notice else {})
    return RedirectResponse("/console/dev-phone?" + urlencode(query), status_code=303)


def _bad(message: str) -> Response:
    return Response(f"400 Bad Request: {message}", status_code=400, media_type="text/plain")


async def act(request: Request) -> Response:
    """Every button of the page: text, calls by hand, answer, press, hang up, move the clock."""
    sandbox = _sandbox(request)
    if sandbox is None or request.path_params["action"] not in ACTIONS:
        return _not_found(request)
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    field = {name: str(form.get(name) or "").strip() for name in form}
    phone = _phone_of(field.get("phone", ""))
    action = request.path_params["action"]
    if action == "clock":
        if field.get("seconds") not in SKIPS:
            return _bad("seconds: an hour or a day")
        if not app_state(request).get("worker_here"):
            return _bad("the clock moves only when the worker runs in this process (gateway run)")
        await dev_clock.skip(app_state(request)["settings"], sandbox, float(field["seconds"]))
        return _back(phone or "", f"Moved {SKIPS[field['seconds']]} forward.")
    if phone is None:
        return _bad("phone: not a phone number")
    ours = await _numbers(request, found.account.id)
    if action == "text":
        if field.get("to") not in ours:
            return _bad("to: not one of this account's numbers")
        body = field.get("body", "")
        if not body or len(body) > 1600:
            return _bad("body: 1 to 1600 characters")
        sandbox.send_sms(phone, field["to"], body)  # signed to the gateway, as Twilio would
        return _back(phone, "Text sent.")
    if action == "hand":
        # The rest of the phone's script (set by the sandbox's control API) and what it has
        # queued stay as they were.
        held = sandbox.phones.get(phone)
        held.script = dataclasses.replace(held.script, by_hand=field.get("by_hand") == "on")
        return _back(phone)
    digits = field.get("digits", "")
    if len(digits) > 20 or not all(key in KEYS for key in digits):
        return _bad("digits: up to 20 of 0-9, * and #")  # before answering: nothing changes
    calls = {call.sid: call for call in _calls(sandbox, phone, ours)}
    call = calls.get(field.get("sid", ""))
    if call is None:
        return _bad("sid: not a call of this phone with this account's numbers")
    try:
        if action in ("human", "machine"):
            sandbox.calls.answer_by_hand(call.sid, machine=action == "machine")
            if digits:
                sandbox.calls.press(call.sid, digits)
        elif action == "press":
            sandbox.calls.press(call.sid, digits)
        else:  # hangup
            sandbox.calls.hangup(call)
    except TwilioError:
        return _bad(f"the call is {call.status}: that cannot be done now")
    return _back(phone)


routes = [
    Route("/dev-phone", page, methods=["GET"]),
    Route("/dev-phone/live", live, methods=["GET"]),
    Route("/dev-phone/{action}", act, methods=["POST"]),
]
