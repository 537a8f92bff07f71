"""The console's Conversations section: `/console/plays` (the account's plays, filtered and
paged; `?awaiting=human` is the inbox) and `/console/plays/{id}` (one play as a conversation),
with the actions a person takes on a play: stop it, take it over (reply as a person), resume it
at a step, start a party line, assign or unassign a rep.

Every figure comes from the API's own handlers (`GET /v1/plays`, `GET /v1/plays/{id}`, its log
and party lines), and every action is the API's own handler (`POST /v1/plays/{id}/stop`,
`.../messages`, `.../resume`, `.../party-line`, `POST`/`DELETE /v1/leads/{id}/assign`), called
through `web.call_api` with the session's account: the same validation, transaction, account
scoping and errors, with no second copy of any of it to drift. An action the API refuses (409,
422) is shown on the play page with the API's message; one that succeeds redirects (303) back to
the play with a short notice.

The parts that change are also served alone, as fragments that static/live.js swaps in without
a reload (`/console/plays/{id}/entries`, `/console/plays/rows?...`), rendered by the same
context code and the same templates the full pages include.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any, get_args
from urllib.parse import urlencode

from sqlmodel import col, select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway import playbook_versions
from gateway.api import assignments, party_lines, play_log, plays, sources, takeover
from gateway.api import emails as emails_api
from gateway.api import playbooks as playbooks_api
from gateway.api import reps as reps_api
from gateway.console import sessions, web
from gateway.errors import ApiError
from gateway.models import Lead
from gateway.state import app_state

PAGE_PLAYS = 50
LOG_PAGE = 500  # the log API's largest page; a play's log is read to its end
LIVE_SECONDS = 3  # how often an open page asks for its changing part
# The states the API filters by, from its own query model (a Literal inside an Optional).
STATES: tuple[str, ...] = get_args(get_args(plays.PlayQuery.model_fields["state"].annotation)[0])
# The list's filters as the page's form names them; `from`/`to` are days (UTC), sent to the API
# as `since` (that day's start) and `until` (the start of the day after `to`: `to` is inclusive).
FILTERS = ("state", "playbook_id", "rep_id", "source", "from", "to")
PASSED_THROUGH = ("state", "playbook_id", "rep_id", "source", "cursor")
# What the play page says after an action: fixed texts chosen by key, never echoed input.
NOTICES = {
    "stopped": "The play is stopped.",
    "replied": "Your text is on its way; the play is yours until you resume it.",
    "resumed": "The play is back with its playbook.",
    "party_line": "The party line is starting: the lead is being called.",
    "assigned": "The rep is assigned.",
    "unassigned": "The rep is unassigned.",
    "started": "The play is started: its first text goes out as soon as the gate allows.",
}


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


async def _reps(request: Request, found: sessions.Session) -> list[dict[str, Any]]:
    listed = await web.call_api(request, found, reps_api.list_reps)
    reps: list[dict[str, Any]] = listed["data"]
    return reps


# The plays list and the inbox.


def _day(params: dict[str, str], name: str) -> date | None:
    value = params[name]
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid", f"{name}: not a day (YYYY-MM-DD)", name) from None


async def _list_context(request: Request, found: sessions.Session) -> dict[str, Any]:
    """The list page's figures (also its rows fragment's): the plays the API lists for the
    form's filters, with their leads' names and their reps'."""
    params = request.query_params
    inbox = params.get("awaiting") == "human"
    shown = {name: params.get(name, "").strip() for name in (*FILTERS, "cursor")}
    context: dict[str, Any] = {
        "account": found.account,
        "csrf": await sessions.csrf_token(app_state(request)["redis"], found.nonce),
        "inbox": inbox,
        "states": STATES,
        "query": shown,
        "reps": [],
        "origins": [],
        "rows": [],
        "next_url": None,
        "rows_url": "",
        "live_seconds": LIVE_SECONDS,
        "error": None,
    }
    # Only the filters the form offers reach the API (its query refuses unknown names).
    query = {name: shown[name] for name in PASSED_THROUGH if shown[name]}
    query["limit"] = str(PAGE_PLAYS)
    if inbox:
        query["awaiting"] = "human"
    try:
        context["reps"] = await _reps(request, found)
        rules = await web.call_api(request, found, sources.list_sources)
        context["origins"] = sorted({rule["origin"] for rule in rules["data"]})
        since, until = _day(shown, "from"), _day(shown, "to")
        if since is not None:
            query["since"] = f"{since.isoformat()}T00:00:00Z"
        if until is not None:
            query["until"] = f"{(until + timedelta(days=1)).isoformat()}T00:00:00Z"
        listed = await web.call_api(request, found, plays.list_plays, query=query)
    except ApiError as exc:
        # The API's own 422 names the field it refused (`until`: the `to` day).
        context["error"] = web.api_message(exc).replace("until:", "to:").replace("since:", "from:")
        return context
    rep_names = {rep["id"]: rep["name"] for rep in context["reps"]}
    leads = await _leads(request, found.account.id, {p["lead_id"] for p in listed["data"]})
    context["rows"] = [
        {
            **play,
            "lead_phone": leads[play["lead_id"]].phone if play["lead_id"] in leads else "",
            "lead_name": _lead_name(leads.get(play["lead_id"])),
            "rep_name": rep_names.get(play["rep_id"], play["rep_id"] or ""),
        }
        for play in listed["data"]
    ]
    kept = {name: value for name, value in shown.items() if value and name != "cursor"}
    if inbox:
        kept["awaiting"] = "human"
    if listed["next_cursor"]:
        context["next_url"] = "/console/plays?" + urlencode(
            {**kept, "cursor": listed["next_cursor"]}
        )
    this_page = {**kept, **({"cursor": shown["cursor"]} if shown["cursor"] else {})}
    context["rows_url"] = "/console/plays/rows?" + urlencode(this_page)
    return context


async def plays_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    context = await _list_context(request, found)
    if not context["inbox"]:
        context.update(await _start_context(request, found))
    return web.page(request, "plays.html", context)


# Starting a play: a lead arrives, as `POST /v1/plays` takes one (the README's "Try it").

START_FIELDS = ("playbook_id", "phone", "first_name", "origin", "origin_key", "settings")


async def _start_context(request: Request, found: sessions.Session) -> dict[str, Any]:
    """The start form's figures: the account's playbooks, each with the settings its latest
    version declares (name and default; None = the play must give it), shown as a hint."""
    listed = await web.call_api(request, found, playbooks_api.list_playbooks)
    declared: dict[str, dict[str, Any]] = {}
    async with app_state(request)["sessions"]() as db:
        for summary in listed["data"]:
            playbook = await playbook_versions.load(
                db, found.account.id, summary["id"], summary["latest_version"]
            )
            declared[summary["id"]] = dict(playbook.settings)
    return {
        "playbooks": listed["data"],
        "declared": declared,
        "start_form": {},
        "start_error": None,
    }


def _start_body(form: dict[str, str]) -> dict[str, Any]:
    """`POST /v1/plays`'s body from the form; the API checks every field. ApiError (422) when
    the settings box is not a JSON object, which the API could not tell apart from none."""
    lead: dict[str, Any] = {"phone": form["phone"]}
    if form["first_name"]:
        lead["first_name"] = form["first_name"]
    if form["origin"] or form["origin_key"]:
        lead["originators"] = [{"origin": form["origin"], "key": form["origin_key"]}]
    settings: Any = {}
    if form["settings"]:
        try:
            settings = json.loads(form["settings"])
        except ValueError as exc:
            raise ApiError(422, "invalid", f"settings: not JSON ({exc})", "settings") from None
        if not isinstance(settings, dict):
            raise ApiError(
                422, "invalid", 'settings: a JSON object, e.g. {"partner_name": "Acme"}', "settings"
            )
    return {"playbook_id": form["playbook_id"], "lead": lead, "settings": settings}


async def start_play(request: Request) -> Response:
    """The start form: the API's own `POST /v1/plays`, then the new play's page; its refusal
    (404 playbook, 409 a running play of this playbook, 422 a setting with its did-you-mean)
    comes back on the list page with what was typed."""
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    shown = {name: _text(form, name) for name in START_FIELDS}
    try:
        play = await web.call_api(request, found, plays.create_play, body=_start_body(shown))
    except ApiError as exc:
        context = await _list_context(request, found)
        context.update(await _start_context(request, found))
        context.update({"start_form": shown, "start_error": web.api_message(exc)})
        return web.page(request, "plays.html", context, exc.status_code)
    return RedirectResponse(f"/console/plays/{play['id']}?notice=started", status_code=303)


async def plays_rows(request: Request) -> Response:
    """The list's table alone, for live.js."""
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    return web.page(request, "plays_rows.html", await _list_context(request, found))


# One play.


def _summary(detail: dict[str, Any]) -> list[tuple[str, str]]:
    """A log entry's detail as (name, value) pairs for the page, nested values as JSON."""
    return [
        (name, value if isinstance(value, str) else json.dumps(value))
        for name, value in detail.items()
        if value is not None
    ]


async def _play_context(
    request: Request, found: sessions.Session, play_id: str
) -> dict[str, Any] | None:
    """The play page's figures (also its live fragment's); None when the account has no such
    play (another account's included)."""
    path = {"play_id": play_id}
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
        calls = await web.call_api(
            request, found, party_lines.list_play_party_lines, path_params=path
        )
        # The play's emails (a drip's, the lead's; rep notices too), oldest first: the API's
        # largest page, as a drip sends a handful.
        emails = await web.call_api(
            request, found, emails_api.list_emails, query={"play_id": play_id, "limit": "200"}
        )
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        return None
    reps = await _reps(request, found)
    rep_names = {rep["id"]: rep["name"] for rep in reps}
    leads = await _leads(request, found.account.id, {play["lead_id"]})
    steps: list[str] = []
    if play["state"] == "running":
        async with app_state(request)["sessions"]() as db:
            playbook = await playbook_versions.load(
                db, found.account.id, play["playbook_id"], play["playbook_version"]
            )
        steps = [step.id for step in playbook.steps]
    return {
        "account": found.account,
        "csrf": await sessions.csrf_token(app_state(request)["redis"], found.nonce),
        "play": play,
        "lead": leads.get(play["lead_id"]),
        "lead_name": _lead_name(leads.get(play["lead_id"])),
        "rep_name": rep_names.get(play["rep_id"], play["rep_id"] or ""),
        "reps": reps,
        "steps": steps,
        "party_lines": calls["data"],
        "emails": emails["data"],
        "entries": [{**entry, "summary": _summary(entry["detail"])} for entry in entries],
        "live_seconds": LIVE_SECONDS,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "error": None,
        "form": {},
    }


def _not_found(request: Request, found: sessions.Session, csrf: str) -> Response:
    context = {"account": found.account, "csrf": csrf}
    return web.page(request, "not_found.html", context, status=404)


async def _render_play(
    request: Request,
    found: sessions.Session,
    play_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    context = await _play_context(request, found, play_id)
    if context is None:
        csrf = await sessions.csrf_token(app_state(request)["redis"], found.nonce)
        return _not_found(request, found, csrf)
    context["error"] = error
    context["form"] = form or {}
    if error is not None:
        context["notice"] = None
    return web.page(request, "play.html", context, status=status)


async def play_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    return await _render_play(request, found, request.path_params["play_id"])


async def play_entries(request: Request) -> Response:
    """The play's changing part alone (state, next action, texts, party lines, log), for
    live.js: the same context and the same template the full page includes."""
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    context = await _play_context(request, found, request.path_params["play_id"])
    if context is None:
        return Response("404 Not Found: no such play", status_code=404, media_type="text/plain")
    return web.page(request, "play_live.html", context)


# The actions. Each returns the notice key for the redirect, or raises the API's ApiError.

Action = Callable[[Request, sessions.Session, FormData, str], Awaitable[str]]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _lead_id(request: Request, found: sessions.Session, play_id: str) -> str:
    play = await web.call_api(request, found, plays.get_play, path_params={"play_id": play_id})
    lead_id: str = play["lead_id"]
    return lead_id


async def _stop(request: Request, found: sessions.Session, form: FormData, play_id: str) -> str:
    path = {"play_id": play_id}
    await web.call_api(request, found, plays.stop_play, path_params=path, method="POST")
    return "stopped"


async def _reply(request: Request, found: sessions.Session, form: FormData, play_id: str) -> str:
    body: dict[str, Any] = {"body": _text(form, "body")}
    if _text(form, "sender"):
        body["sender"] = _text(form, "sender")
    path = {"play_id": play_id}
    await web.call_api(request, found, takeover.post_message, path_params=path, body=body)
    return "replied"


async def _resume(request: Request, found: sessions.Session, form: FormData, play_id: str) -> str:
    body: dict[str, Any] = {"step": _text(form, "step")}
    if _text(form, "by"):
        body["by"] = _text(form, "by")
    path = {"play_id": play_id}
    await web.call_api(request, found, takeover.post_resume, path_params=path, body=body)
    return "resumed"


async def _party_line(
    request: Request, found: sessions.Session, form: FormData, play_id: str
) -> str:
    path = {"play_id": play_id}
    await web.call_api(request, found, party_lines.create_party_line, path_params=path, body={})
    return "party_line"


async def _assign(request: Request, found: sessions.Session, form: FormData, play_id: str) -> str:
    path = {"lead_id": await _lead_id(request, found, play_id)}
    body = {"rep_id": _text(form, "rep_id")}
    await web.call_api(request, found, assignments.assign, path_params=path, body=body)
    return "assigned"


async def _unassign(request: Request, found: sessions.Session, form: FormData, play_id: str) -> str:
    path = {"lead_id": await _lead_id(request, found, play_id)}
    await web.call_api(request, found, assignments.unassign, path_params=path, method="DELETE")
    return "unassigned"


def _action(act: Action) -> Callable[[Request], Awaitable[Response]]:
    """The POST route for one action: session and CSRF token first (web.signed_in_post), then
    the API's handler; its refusal is shown on the play page with the API's status."""

    async def endpoint(request: Request) -> Response:
        checked = await web.signed_in_post(request)
        if isinstance(checked, Response):
            return checked
        found, form = checked
        play_id = request.path_params["play_id"]
        try:
            notice = await act(request, found, form, play_id)
        except ApiError as exc:
            kept = {name: _text(form, name) for name in ("body", "sender", "step", "by", "rep_id")}
            error = web.api_message(exc)
            return await _render_play(
                request, found, play_id, error=error, status=exc.status_code, form=kept
            )
        return RedirectResponse(
            f"/console/plays/{play_id}?{urlencode({'notice': notice})}", status_code=303
        )

    return endpoint


routes = [
    Route("/plays", plays_page, methods=["GET"]),
    Route("/plays", start_play, methods=["POST"]),
    # Before /plays/{play_id}, which would take `rows` for an id.
    Route("/plays/rows", plays_rows, methods=["GET"]),
    Route("/plays/{play_id}", play_page, methods=["GET"]),
    Route("/plays/{play_id}/entries", play_entries, methods=["GET"]),
    Route("/plays/{play_id}/stop", _action(_stop), methods=["POST"]),
    Route("/plays/{play_id}/messages", _action(_reply), methods=["POST"]),
    Route("/plays/{play_id}/resume", _action(_resume), methods=["POST"]),
    Route("/plays/{play_id}/party-line", _action(_party_line), methods=["POST"]),
    Route("/plays/{play_id}/assign", _action(_assign), methods=["POST"]),
    Route("/plays/{play_id}/unassign", _action(_unassign), methods=["POST"]),
]
