"""The console's Conversations section: `/console/plays` (the account's plays, filtered and
paged; `?awaiting=human` is the inbox) and `/console/plays/{id}` (one play as a conversation).

Every figure comes from the API's own handlers (`GET /v1/plays`, `GET /v1/plays/{id}` and
`GET /v1/plays/{id}/log`), called with the session's account where the API key middleware puts
it, as the Compliance page's export does: the same query, keyset pagination, `next_action` and
404 for another account's play, with no second copy of any of it to drift.
"""

from __future__ import annotations

import json
from typing import Any, get_args
from urllib.parse import urlencode

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import play_log, plays
from gateway.console import sessions, web
from gateway.errors import ApiError
from gateway.models import Lead
from gateway.state import app_state

PAGE_PLAYS = 50
LOG_PAGE = 500  # the log API's largest page; a play's log is read to its end
# The states the API filters by, from its own query model (a Literal inside an Optional).
STATES: tuple[str, ...] = get_args(get_args(plays.PlayQuery.model_fields["state"].annotation)[0])


async def _leads(request: Request, account_id: str, ids: set[str]) -> dict[str, Lead]:
    if not ids:
        return {}
    async with app_state(request)["sessions"]() as db:
        query = select(Lead).where(Lead.account_id == account_id, col(Lead.id).in_(ids))
        return {lead.id: lead for lead in (await db.exec(query)).all()}


def _lead_name(lead: Lead | None) -> str:
    if lead is None:
        return ""
    return " ".join(part for part in (lead.first_name, lead.last_name) if part)


async def plays_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    params = request.query_params
    inbox = params.get("awaiting") == "human"
    shown = {name: params.get(name, "").strip() for name in ("state", "playbook_id", "cursor")}
    # Only the filters the form offers reach the API (its query refuses unknown names).
    query = {name: value for name, value in shown.items() if value}
    query["limit"] = str(PAGE_PLAYS)
    if inbox:
        query["awaiting"] = "human"
    context: dict[str, Any] = {
        "account": found.account,
        "csrf": await sessions.csrf_token(app_state(request)["redis"], found.nonce),
        "inbox": inbox,
        "states": STATES,
        "query": shown,
        "rows": [],
        "next_url": None,
        "error": None,
    }
    try:
        listed = await web.call_api(request, found, plays.list_plays, query=query)
    except ApiError as exc:
        context["error"] = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return web.page(request, "plays.html", context)
    leads = await _leads(request, found.account.id, {p["lead_id"] for p in listed["data"]})
    context["rows"] = [
        {
            **play,
            "lead_phone": leads[play["lead_id"]].phone if play["lead_id"] in leads else "",
            "lead_name": _lead_name(leads.get(play["lead_id"])),
        }
        for play in listed["data"]
    ]
    if listed["next_cursor"]:
        following = {k: v for k, v in query.items() if k != "limit"}
        following["cursor"] = listed["next_cursor"]
        context["next_url"] = "/console/plays?" + urlencode(following)
    return web.page(request, "plays.html", context)


def _summary(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """A log entry's detail as (name, value) pairs for the page, nested values as JSON."""
    return [
        (name, value if isinstance(value, str) else json.dumps(value))
        for name, value in detail.items()
        if value is not None
    ]


async def play_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    play_id = request.path_params["play_id"]
    path = {"play_id": play_id}
    csrf = await sessions.csrf_token(app_state(request)["redis"], found.nonce)
    try:
        play = await web.call_api(request, found, plays.get_play, path_params=path)
        entries: list[dict[str, Any]] = []
        after: int | None = None
        while True:  # the log's pages, to its end
            log_query = {"limit": str(LOG_PAGE)} | ({"after": str(after)} if after else {})
            log = await web.call_api(
                request, found, play_log.get_play_log, query=log_query, path_params=path
            )
            entries += log["data"]
            after = log["next_after"]
            if after is None:
                break
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        context = {"account": found.account, "csrf": csrf}
        return web.page(request, "not_found.html", context, status=404)
    leads = await _leads(request, found.account.id, {play["lead_id"]})
    context = {
        "account": found.account,
        "csrf": csrf,
        "play": play,
        "lead": leads.get(play["lead_id"]),
        "lead_name": _lead_name(leads.get(play["lead_id"])),
        "entries": [{**entry, "summary": _summary(entry["detail"])} for entry in entries],
    }
    return web.page(request, "play.html", context)


routes = [
    Route("/plays", plays_page, methods=["GET"]),
    Route("/plays/{play_id}", play_page, methods=["GET"]),
]
