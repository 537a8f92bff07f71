"""The console's Reps and Leads section: `/console/reps` (the account's reps, each with an
availability toggle, and a form to add one) and `/console/leads` (leads paged with the API's
cursor, found by phone; one lead with its plays, consent evidence and opt-out status).

Every read and change goes through the API's own handlers (`/v1/reps`, `/v1/leads`,
`GET /v1/plays?lead_id=`) via web.call_api: the same validation (a phone in E.164, a name's
length), the same account scoping and 404s, no second copy to drift.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.api import leads, plays, reps
from gateway.console import sessions, web
from gateway.errors import ApiError
from gateway.state import app_state

PAGE_LEADS = 50
PLAYS_PAGE = 200  # the plays API's largest page; a lead's plays are read to their end


def _message(exc: ApiError) -> str:
    return f"{exc.field}: {exc.message}" if exc.field else exc.message


async def _context(request: Request, found: sessions.Session) -> dict[str, Any]:
    return {
        "account": found.account,
        "csrf": await sessions.csrf_token(app_state(request)["redis"], found.nonce),
    }


def _missing(request: Request, context: dict[str, Any], what: str, back: str) -> Response:
    context.update({"what": what, "back": back})
    return web.page(request, "missing.html", context, status=404)


# Reps


async def _reps_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    context = await _context(request, found)
    listed = await web.call_api(request, found, reps.list_reps)
    context.update({"reps": listed["data"], "error": None, "form": {}})
    context.update(extra or {})
    return web.page(request, "reps.html", context, status)


async def reps_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    return await _reps_page(request, found)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def add_rep(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    shown = {name: _field(form, name) for name in ("name", "phone", "email")}
    body: dict[str, Any] = {"name": shown["name"], "phone": shown["phone"]}
    if shown["email"]:
        body["email"] = shown["email"]
    body["available"] = form.get("available") == "true"
    try:
        await web.call_api(request, found, reps.create_rep, body=body)
    except ApiError as exc:
        # The form comes back with what was typed and the API's word on the field at fault.
        return await _reps_page(
            request, found, {"error": _message(exc), "form": shown}, exc.status_code
        )
    return RedirectResponse("/console/reps", status_code=303)


async def set_availability(request: Request) -> Response:
    """The toggle: one form per rep posting the availability it should have now."""
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    wanted = form.get("available")
    if wanted not in ("true", "false"):
        return await _reps_page(request, found, {"error": "available: true or false"}, 422)
    path = {"rep_id": request.path_params["rep_id"]}
    try:
        await web.call_api(
            request,
            found,
            reps.update_rep,
            path_params=path,
            body={"available": wanted == "true"},
            method="PATCH",
        )
    except ApiError as exc:
        if exc.status_code == 404:
            return _missing(request, await _context(request, found), "rep", "/console/reps")
        return await _reps_page(request, found, {"error": _message(exc)}, exc.status_code)
    return RedirectResponse("/console/reps", status_code=303)


# Leads


async def leads_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    params = request.query_params
    shown = {name: params.get(name, "").strip() for name in ("phone", "cursor")}
    query = {name: value for name, value in shown.items() if value}
    query["limit"] = str(PAGE_LEADS)
    context = await _context(request, found)
    context.update({"query": shown, "rows": [], "next_url": None, "error": None})
    try:
        listed = await web.call_api(request, found, leads.list_leads, query=query)
    except ApiError as exc:
        context["error"] = _message(exc)
        return web.page(request, "leads.html", context, exc.status_code)
    context["rows"] = listed["data"]
    if listed["next_cursor"]:
        following = {k: v for k, v in query.items() if k != "limit"}
        following["cursor"] = listed["next_cursor"]
        context["next_url"] = "/console/leads?" + urlencode(following)
    return web.page(request, "leads.html", context)


async def lead_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    lead_id = request.path_params["lead_id"]
    context = await _context(request, found)
    try:
        lead = await web.call_api(request, found, leads.get_lead, path_params={"lead_id": lead_id})
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        return _missing(request, context, "lead", "/console/leads")
    lead_plays: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:  # the lead's plays, every page (a lead has a handful)
        query = {"lead_id": lead["id"], "limit": str(PLAYS_PAGE)}
        if cursor:
            query["cursor"] = cursor
        listed = await web.call_api(request, found, plays.list_plays, query=query)
        lead_plays += listed["data"]
        cursor = listed["next_cursor"]
        if not cursor:
            break
    name = " ".join(part for part in (lead["first_name"], lead["last_name"]) if part)
    context.update({"lead": lead, "lead_name": name, "plays": lead_plays})
    return web.page(request, "lead.html", context)


routes = [
    Route("/reps", reps_page, methods=["GET"]),
    Route("/reps", add_rep, methods=["POST"]),
    Route("/reps/{rep_id}/availability", set_availability, methods=["POST"]),
    Route("/leads", leads_page, methods=["GET"]),
    Route("/leads/{lead_id}", lead_page, methods=["GET"]),
]
