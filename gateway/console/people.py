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

PAGE_LEADS = 50
PLAYS_PAGE = 200  # the plays API's largest page; a lead's plays are read to their end


REP = web.Kind("rep", "/console/reps", param="rep_id")
LEAD = web.Kind("lead", "/console/leads", param="lead_id")


# Reps


async def _reps_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    context = await web.base_context(request, found)
    listed = await web.call_api(request, found, reps.list_reps)
    context.update({"reps": listed["data"], "error": None, "form": {}})
    context.update(extra or {})
    return web.page(request, "reps.html", context, status)


reps_page = web.signed_in(_reps_page)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@web.posted
async def add_rep(request: Request, found: sessions.Session, form: FormData) -> Response:
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
            request, found, {"error": web.api_message(exc), "form": shown}, exc.status_code
        )
    return RedirectResponse("/console/reps", status_code=303)


@web.posted
async def set_availability(request: Request, found: sessions.Session, form: FormData) -> Response:
    """The toggle: one form per rep posting the availability it should have now."""
    wanted = form.get("available")
    if wanted not in ("true", "false"):
        return await _reps_page(request, found, {"error": "available: true or false"}, 422)
    body = {"available": wanted == "true"}
    try:
        updated = await web.call_or_missing(
            request,
            found,
            reps.update_rep,
            REP,
            request.path_params["rep_id"],
            body=body,
            method="PATCH",
        )
    except ApiError as exc:
        return await _reps_page(request, found, {"error": web.api_message(exc)}, exc.status_code)
    if isinstance(updated, Response):
        return updated
    return RedirectResponse("/console/reps", status_code=303)


# Leads


@web.signed_in
async def leads_page(request: Request, found: sessions.Session) -> Response:
    params = request.query_params
    shown = {name: params.get(name, "").strip() for name in ("phone", "cursor")}
    query = {name: value for name, value in shown.items() if value}
    query["limit"] = str(PAGE_LEADS)
    context = await web.base_context(request, found)
    context.update({"query": shown, "rows": [], "next_url": None, "error": None})
    try:
        listed = await web.call_api(request, found, leads.list_leads, query=query)
    except ApiError as exc:
        context["error"] = web.api_message(exc)
        return web.page(request, "leads.html", context, exc.status_code)
    context["rows"] = listed["data"]
    if listed["next_cursor"]:
        following = {k: v for k, v in query.items() if k != "limit"}
        following["cursor"] = listed["next_cursor"]
        context["next_url"] = "/console/leads?" + urlencode(following)
    return web.page(request, "leads.html", context)


@web.signed_in
async def lead_page(request: Request, found: sessions.Session) -> Response:
    lead = await web.call_or_missing(
        request, found, leads.get_lead, LEAD, request.path_params["lead_id"]
    )
    if isinstance(lead, Response):
        return lead
    context = await web.base_context(request, found)
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
