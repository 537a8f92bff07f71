"""The console's routes: sign-in, sign-out, the Compliance page and the Conversations section
(gateway/console/conversations.py), mounted under `/console`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlmodel import select
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from compliance.gate import Channel
from gateway import gate
from gateway.accounts import authenticate
from gateway.api import optouts as optouts_api
from gateway.clock import now
from gateway.console import (
    conversations,
    dev_phone,
    numbers,
    people,
    playbooks,
    sessions,
    source_rules,
    web,
    webhooks,
)
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.models import Channel as LedgerChannel
from gateway.models import Lead, LedgerSource
from gateway.phones import InvalidPhone, to_e164
from gateway.state import app_state

PAGE_ROWS = 200  # the page shows this many events at a time; the export has every one


async def home(request: Request) -> Response:
    found = await web.session_of(request)
    return RedirectResponse("/console/compliance" if found else "/console/sign-in", 303)


async def _sign_in_page(request: Request, error: str | None = None, status: int = 200) -> Response:
    redis = app_state(request)["redis"]
    # Before sign-in there is no session to bind the CSRF token to: a short-lived cookie's
    # nonce stands in for it, so another site cannot post a key into this browser's sign-in.
    nonce = request.cookies.get(sessions.SIGN_IN_COOKIE) or sessions.new_nonce()
    context = {"error": error, "csrf": await sessions.csrf_token(redis, nonce), "account": None}
    response = web.page(request, "sign_in.html", context, status)
    web.set_cookie(request, response, sessions.SIGN_IN_COOKIE, nonce, sessions.SIGN_IN_SECONDS)
    return response


async def sign_in_form(request: Request) -> Response:
    if await web.session_of(request) is not None:
        return RedirectResponse("/console/compliance", 303)
    return await _sign_in_page(request)


async def sign_in(request: Request) -> Response:
    state = app_state(request)
    form = await request.form()
    token = form.get("csrf")
    nonce = request.cookies.get(sessions.SIGN_IN_COOKIE)
    if not await sessions.csrf_ok(state["redis"], nonce, token if isinstance(token, str) else None):
        return web.forbidden()
    secret = form.get("key")
    found = None
    if isinstance(secret, str) and secret.strip():
        # The API's own check: the key's hash, and not revoked.
        async with transaction(state["sessions"]) as db:
            found = await authenticate(db, secret.strip())
    if found is None:
        return await _sign_in_page(request, "That API key is not valid or has been revoked.", 401)
    _account, key = found
    cookie, _nonce = await sessions.start(state["redis"], key)
    response = RedirectResponse("/console/compliance", status_code=303)
    web.set_cookie(request, response, sessions.COOKIE, cookie, sessions.SESSION_SECONDS)
    response.delete_cookie(sessions.SIGN_IN_COOKIE, path="/console")
    return response


async def sign_out(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, _form = checked
    await sessions.end(app_state(request)["redis"], found.nonce)
    response = web.to_sign_in()
    response.delete_cookie(sessions.COOKIE, path="/console")
    return response


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


LEDGER_FIELDS = ("phone", "since", "until", "channel", "source")
CHANNELS = tuple(channel.value for channel in LedgerChannel)
SOURCES = tuple(source.value for source in LedgerSource)


def _ledger_query(request: Request) -> tuple[dict[str, str], dict[str, str]]:
    """The search form's fields as the query of `GET /v1/opt-outs` (whose own model checks the
    phone, the channel and the source), and the fields as typed, to show again. Dates are UTC
    days; `until` is inclusive (the API's bound is the next midnight). ValueError with a
    message for a malformed date, which the API would not know as a day."""
    params = request.query_params
    shown = {name: params.get(name, "").strip() for name in LEDGER_FIELDS}
    query = {name: shown[name] for name in ("phone", "channel", "source") if shown[name]}
    try:
        since_day, until_day = _day(shown["since"]), _day(shown["until"])
    except ValueError:
        raise ValueError("Dates must look like 2026-01-31.") from None
    if since_day:
        query["since"] = datetime.combine(since_day, time(), UTC).isoformat()
    if until_day:
        query["until"] = datetime.combine(until_day + timedelta(days=1), time(), UTC).isoformat()
    if since_day and until_day and until_day < since_day:
        raise ValueError("The end date must not be before the start date.")
    return query, shown


def _export_urls(query: dict[str, str]) -> dict[str, str]:
    # The API export's own query parameters (gateway/api/optouts.py ExportQuery).
    return {
        fmt: "/console/compliance/export?" + urlencode({**query, "format": fmt})
        for fmt in ("csv", "jsonl")
    }


async def _compliance_page(
    request: Request, found: sessions.Session, extra: dict[str, Any] | None = None
) -> Response:
    context: dict[str, Any] = await web.base_context(request, found) | {
        "rows": [],
        "next_url": None,
        "check_phone": "",
        "check_channel": "sms",
        "ledger_error": None,
        "channels": CHANNELS,
        "sources": SOURCES,
        "manual": {"phone": "", "channel": "manual", "actor": "", "note": "", "text": ""},
        "recorded": request.query_params.get("recorded", ""),
    }
    context["query"] = {name: request.query_params.get(name, "") for name in LEDGER_FIELDS}
    try:
        query, context["query"] = _ledger_query(request)
        cursor = request.query_params.get("cursor", "")
        listed = await web.call_api(
            request,
            found,
            optouts_api.list_opt_outs,
            query={**query, "limit": str(PAGE_ROWS)} | ({"cursor": cursor} if cursor else {}),
        )
    except ValueError as exc:
        context["ledger_error"] = str(exc)
    except ApiError as exc:
        context["ledger_error"] = web.api_message(exc)
    else:
        context["rows"] = listed["data"]
        if listed["next_cursor"]:
            following = {**context["query"], "cursor": listed["next_cursor"]}
            context["next_url"] = "/console/compliance?" + urlencode(following)
        context["export_urls"] = _export_urls(query)
    context.update(extra or {})
    return web.page(request, "compliance.html", context)


async def compliance(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    return await _compliance_page(request, found)


async def record_opt_out(request: Request) -> Response:
    """A manual opt-out (taken by phone, email, in person) through `POST /v1/opt-outs`, with
    who took it and a note; then the ledger shows the phone's events (post, redirect, get)."""
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    fields = {
        name: str(form.get(name) or "").strip()
        for name in ("phone", "channel", "actor", "note", "text")
    }
    extra: dict[str, Any] = {"manual": fields}
    if not fields["actor"]:
        # The API leaves it optional; a person's entry on this page says who took it.
        extra["manual_error"] = "Taken by: say who took the opt-out."
        return await _compliance_page(request, found, extra)
    body = {name: value for name, value in fields.items() if value}
    try:
        event = await web.call_api(request, found, optouts_api.create_opt_out, body=body)
    except ApiError as exc:
        extra["manual_error"] = web.api_message(exc)
        return await _compliance_page(request, found, extra)
    shown = urlencode({"phone": event["phone"], "recorded": str(event["id"])})
    return RedirectResponse(f"/console/compliance?{shown}", status_code=303)


async def check(request: Request) -> Response:
    """The gate's answer for a contact now, as `gateway compliance check` asks it."""
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    raw_phone = str(form.get("phone") or "").strip()
    channel: Channel = "call" if form.get("channel") == "call" else "sms"
    extra: dict[str, Any] = {"check_phone": raw_phone, "check_channel": channel}
    try:
        phone = to_e164(raw_phone)
    except InvalidPhone as exc:
        extra["check_error"] = f"Phone: {exc}"
        return await _compliance_page(request, found, extra)
    account = found.account
    at = now()
    async with app_state(request)["sessions"]() as db:
        lead = (
            await db.exec(select(Lead).where(Lead.account_id == account.id, Lead.phone == phone))
        ).first()
        decision = await gate.decide(
            db, account, phone, channel=channel, purpose="initiated", lead=lead, at=at
        )
    words = {"allow": "allowed", "defer": "deferred", "block": "blocked"}
    extra["decision"] = {
        "phone": phone,
        "action": decision.action,
        "word": words[decision.action],
        "rule": decision.reason,
        "detail": decision.detail,
        "until": decision.until.isoformat() if decision.until else None,
        "zones": decision.zones,
    }
    extra["zone_times"] = {
        zone: at.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes") for zone in decision.zones
    }
    return await _compliance_page(request, found, extra)


async def export(request: Request) -> Response:
    """The API's streamed export (`GET /v1/opt-outs/export`), reached with the console session:
    the same handler, given the session's account where the API key middleware puts it."""
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    request.scope["state"]["account"] = found.account
    request.scope["state"]["api_key"] = found.key
    return await optouts_api.export_opt_outs(request)


def mount() -> Mount:
    return Mount(
        "/console",
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/sign-in", sign_in_form, methods=["GET"]),
            Route("/sign-in", sign_in, methods=["POST"]),
            Route("/sign-out", sign_out, methods=["POST"]),
            Route("/compliance", compliance, methods=["GET"]),
            Route("/compliance/check", check, methods=["POST"]),
            Route("/compliance/opt-out", record_opt_out, methods=["POST"]),
            Route("/compliance/export", export, methods=["GET"]),
            *conversations.routes,
            *playbooks.routes,
            *source_rules.routes,
            *dev_phone.routes,
            *numbers.routes,
            *people.routes,
            *webhooks.routes,
            Mount("/static", app=StaticFiles(directory=web.HERE / "static"), name="console-static"),
        ],
        middleware=[Middleware(web.SecurityHeaders), Middleware(web.ScopeGate)],
    )
