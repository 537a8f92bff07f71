"""The console's Source rules section ("API workflows"): `/console/sources` (the account's rules
and a form for a new one) and `/console/sources/{id}` (edit, clone for another origin, delete).

One rule per lead origin: which playbook a new lead from that origin starts, and how its rep is
chosen (round robin over the reps ticked, or `manual`: the business assigns one). Every action
is the API's own handler (gateway/api/sources.py) called for the session's account, so the
page refuses what the API refuses (a second rule for an origin, a rep or playbook of another
account) with the API's words. A rule's `settings` and `notify` have no fields here: an edit
leaves them as they are (the API's PATCH changes only the fields it is given).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.api import playbooks as playbooks_api
from gateway.api import reps as reps_api
from gateway.api import sources as api
from gateway.console import sessions, web
from gateway.errors import ApiError
from gateway.reps import MANUAL, ROUND_ROBIN
from gateway.state import app_state

DISTRIBUTIONS = ((ROUND_ROBIN, "Round robin over the reps ticked"), (MANUAL, "Manual: none"))


def _from_form(form: FormData) -> dict[str, Any]:
    """The form's fields as the API's body. `manual` takes no reps: any ticked are dropped
    rather than refused, since the page shows them whatever the distribution."""
    distribution = str(form.get("distribution") or ROUND_ROBIN)
    reps = [str(rep) for rep in form.getlist("rep_ids")]
    return {
        "origin": str(form.get("origin") or "").strip(),
        "playbook_id": str(form.get("playbook_id") or ""),
        "distribution": distribution,
        "rep_ids": [] if distribution == MANUAL else reps,
    }


async def _context(request: Request, found: sessions.Session) -> dict[str, Any]:
    reps = await web.call_api(request, found, reps_api.list_reps)
    playbooks = await web.call_api(request, found, playbooks_api.list_playbooks)
    return {
        "account": found.account,
        "csrf": await sessions.csrf_token(app_state(request)["redis"], found.nonce),
        "reps": reps["data"],
        "rep_names": {rep["id"]: rep["name"] for rep in reps["data"]},
        "playbooks": playbooks["data"],
        "distributions": DISTRIBUTIONS,
    }


def _refusal(exc: ApiError) -> dict[str, Any]:
    return {"message": exc.message, "field": exc.field}


async def list_page(
    request: Request,
    found: sessions.Session | None = None,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    found = found or await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    context = await _context(request, found)
    listed = await web.call_api(request, found, api.list_sources)
    context |= {
        "rules": listed["data"],
        "deleted": request.query_params.get("deleted", ""),
        "form": {"origin": "", "playbook_id": "", "distribution": ROUND_ROBIN, "rep_ids": []},
        "error": None,
    }
    context |= extra or {}
    return web.page(request, "sources.html", context, status)


async def create(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    body = _from_form(form)
    try:
        rule = await web.call_api(request, found, api.create_source, body=body)
    except ApiError as exc:
        extra = {"form": body, "error": _refusal(exc)}
        return await list_page(request, found, extra, exc.status_code)
    return RedirectResponse(f"/console/sources/{rule['id']}?saved=created", 303)


async def rule_page(
    request: Request,
    found: sessions.Session | None = None,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    found = found or await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    context = await _context(request, found)
    path = {"rule_id": request.path_params["rule_id"]}
    try:
        rule = await web.call_api(request, found, api.get_source, path_params=path)
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        return web.page(request, "source_missing.html", context, 404)
    context |= {
        "rule": rule,
        "form": rule,
        "clone_origin": "",
        "saved": request.query_params.get("saved", ""),
        "error": None,
    }
    context |= extra or {}
    return web.page(request, "source.html", context, status)


async def update(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    body = _from_form(form)
    path = {"rule_id": request.path_params["rule_id"]}
    try:
        await web.call_api(
            request, found, api.update_source, path_params=path, body=body, method="PATCH"
        )
    except ApiError as exc:
        if exc.status_code == 404:
            return await rule_page(request, found)
        extra = {"form": body, "error": _refusal(exc)}
        return await rule_page(request, found, extra, exc.status_code)
    return RedirectResponse(f"/console/sources/{path['rule_id']}?saved=saved", 303)


async def clone(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    origin = str(form.get("clone_origin") or "").strip()
    path = {"rule_id": request.path_params["rule_id"]}
    try:
        copy = await web.call_api(
            request, found, api.clone_source, path_params=path, body={"origin": origin}
        )
    except ApiError as exc:
        if exc.status_code == 404:
            return await rule_page(request, found)
        extra = {"clone_origin": origin, "clone_error": exc.message}
        return await rule_page(request, found, extra, exc.status_code)
    return RedirectResponse(f"/console/sources/{copy['id']}?saved=cloned", 303)


async def delete(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, _form = checked
    path = {"rule_id": request.path_params["rule_id"]}
    try:
        await web.call_api(request, found, api.delete_source, path_params=path, method="DELETE")
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        return await rule_page(request, found)
    return RedirectResponse("/console/sources?deleted=1", 303)


routes = [
    Route("/sources", list_page, methods=["GET"]),
    Route("/sources", create, methods=["POST"]),
    Route("/sources/{rule_id}", rule_page, methods=["GET"]),
    Route("/sources/{rule_id}", update, methods=["POST"]),
    Route("/sources/{rule_id}/clone", clone, methods=["POST"]),
    Route("/sources/{rule_id}/delete", delete, methods=["POST"]),
]
