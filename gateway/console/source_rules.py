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

DISTRIBUTIONS = ((ROUND_ROBIN, "Round robin over the reps ticked"), (MANUAL, "Manual: none"))
RULE = web.Kind("source rule", "/console/sources", "Back to Source rules", param="rule_id")


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
    return await web.base_context(request, found) | {
        "reps": reps["data"],
        "rep_names": {rep["id"]: rep["name"] for rep in reps["data"]},
        "playbooks": playbooks["data"],
        "distributions": DISTRIBUTIONS,
    }


async def _list_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
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


list_page = web.signed_in(_list_page)


@web.posted
async def create(request: Request, found: sessions.Session, form: FormData) -> Response:
    body = _from_form(form)
    try:
        rule = await web.call_api(request, found, api.create_source, body=body)
    except ApiError as exc:
        extra = {"form": body, "error": exc.message}
        return await _list_page(request, found, extra, exc.status_code)
    return RedirectResponse(f"/console/sources/{rule['id']}?saved=created", 303)


async def _rule_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    rule_id = request.path_params["rule_id"]
    rule = await web.call_or_missing(request, found, api.get_source, RULE, rule_id)
    if isinstance(rule, Response):
        return rule
    context = await _context(request, found)
    context |= {
        "rule": rule,
        "form": rule,
        "clone_origin": "",
        "saved": request.query_params.get("saved", ""),
        "error": None,
    }
    context |= extra or {}
    return web.page(request, "source.html", context, status)


rule_page = web.signed_in(_rule_page)


@web.posted
async def update(request: Request, found: sessions.Session, form: FormData) -> Response:
    body = _from_form(form)
    rule_id = request.path_params["rule_id"]
    try:
        saved = await web.call_or_missing(
            request, found, api.update_source, RULE, rule_id, body=body, method="PATCH"
        )
    except ApiError as exc:
        extra = {"form": body, "error": exc.message}
        return await _rule_page(request, found, extra, exc.status_code)
    if isinstance(saved, Response):
        return saved
    return RedirectResponse(f"/console/sources/{rule_id}?saved=saved", 303)


@web.posted
async def clone(request: Request, found: sessions.Session, form: FormData) -> Response:
    origin = str(form.get("clone_origin") or "").strip()
    rule_id = request.path_params["rule_id"]
    try:
        copy = await web.call_or_missing(
            request, found, api.clone_source, RULE, rule_id, body={"origin": origin}
        )
    except ApiError as exc:
        extra = {"clone_origin": origin, "clone_error": exc.message}
        return await _rule_page(request, found, extra, exc.status_code)
    if isinstance(copy, Response):
        return copy
    return RedirectResponse(f"/console/sources/{copy['id']}?saved=cloned", 303)


@web.posted
async def delete(request: Request, found: sessions.Session, _form: FormData) -> Response:
    rule_id = request.path_params["rule_id"]
    deleted = await web.call_or_missing(
        request, found, api.delete_source, RULE, rule_id, method="DELETE"
    )
    if isinstance(deleted, Response):
        return deleted
    return RedirectResponse("/console/sources?deleted=1", 303)


routes = [
    Route("/sources", list_page, methods=["GET"]),
    Route("/sources", create, methods=["POST"]),
    Route("/sources/{rule_id}", rule_page, methods=["GET"]),
    Route("/sources/{rule_id}", update, methods=["POST"]),
    Route("/sources/{rule_id}/clone", clone, methods=["POST"]),
    Route("/sources/{rule_id}/delete", delete, methods=["POST"]),
]
