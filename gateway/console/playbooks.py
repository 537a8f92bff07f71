"""The console's Playbooks section: `/console/playbooks` (the account's playbooks, and a form to
publish a new one) and `/console/playbooks/{id}` (one version's YAML, its activities, the
validator's warnings; publish a new version, clone, delete).

Every action is the API's own handler (gateway/api/playbooks.py) called for the session's
account through web.call_api: the same validation, the same version numbering, the same 404
for another account's playbook. A publish the validator refuses changes nothing; the page then
shows the draft line by line with each error under the line it is about (the issue's path
mapped to a line by gateway/playbooks/lines.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.api import playbooks as api
from gateway.console import sessions, web
from gateway.errors import ApiError
from gateway.playbooks.lines import issue_line

MAX_VERSIONS_LISTED = 500  # the version picker lists the latest this many
PLAYBOOK = web.Kind("playbook", "/console/playbooks", "Back to Playbooks", param="playbook_id")
VERSION = replace(PLAYBOOK, what="version of this playbook")


def _located(text: str, issues: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Issues with the line of `text` each is about (None: the document as a whole)."""
    return [{**i, "line": issue_line(text, i["field"], i["message"])} for i in issues]


def _listing(text: str, issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The draft line by line, each line with the issues found on it."""
    by_line: dict[int, list[dict[str, Any]]] = {}
    for issue in issues:
        if issue["line"] is not None:
            by_line.setdefault(issue["line"], []).append(issue)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it doesn't start another
    # A syntax error may be reported just past the last line (end of the document).
    while len(lines) < max(by_line, default=0):
        lines.append("")
    return [
        {"number": n, "text": line, "issues": by_line.get(n, [])}
        for n, line in enumerate(lines, start=1)
    ]


async def _check(
    request: Request, found: sessions.Session, text: str, playbook_id: str | None
) -> dict[str, Any]:
    """The validator's answer for `text` (`POST /v1/playbooks/validate`), issues located."""
    query = {"playbook_id": playbook_id} if playbook_id else None
    answer: dict[str, Any] = await web.call_api(
        request, found, api.validate_playbook_draft, query=query, body={"document": text}
    )
    return {
        "errors": _located(text, answer["errors"]),
        "warnings": _located(text, answer["warnings"]),
    }


async def _list_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    listed = await web.call_api(request, found, api.list_playbooks)
    context = await web.base_context(request, found)
    context |= {
        "playbooks": listed["data"],
        "deleted": request.query_params.get("deleted", ""),
        "form": {"playbook_id": "", "document": ""},
        "draft": None,
    }
    context |= extra or {}
    return web.page(request, "playbooks.html", context, status)


list_page = web.signed_in(_list_page)


async def _playbook_context(
    request: Request, found: sessions.Session, playbook_id: str, version: str | None
) -> dict[str, Any] | Response:
    """What the playbook's page shows: the chosen version, its activities, its warnings; or the
    missing page when there is no such playbook (or version) in the account."""
    query = {"version": version} if version else None
    try:
        shown = await web.call_api(
            request, found, api.get_playbook, query=query, path_params={"playbook_id": playbook_id}
        )
    except ApiError as exc:
        if exc.status_code not in (404, 422):  # 422: a version that isn't a number
            raise
        return await web.missing(request, found, VERSION if exc.field == "version" else PLAYBOOK)
    context = await web.base_context(request, found)
    checked = await _check(request, found, shown["document"], playbook_id)
    latest = shown["latest_version"]
    context |= {
        "playbook": shown,
        "warnings": checked["warnings"],
        "versions": list(range(latest, max(latest - MAX_VERSIONS_LISTED, 0), -1)),
        "activities": sorted(shown["activity_labels"].items()),
        "form": {"document": shown["document"], "clone_id": f"{playbook_id}-copy"},
        "draft": None,
        "published": request.query_params.get("published", ""),
        "cloned_from": request.query_params.get("cloned_from", ""),
    }
    return context


async def _playbook_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    playbook_id = request.path_params["playbook_id"]
    version = request.query_params.get("version") or None
    context = await _playbook_context(request, found, playbook_id, version)
    if isinstance(context, Response):
        return context
    if extra:
        form = {**context["form"], **extra.pop("form", {})}
        context |= extra
        context["form"] = form
    return web.page(request, "playbook.html", context, status)


playbook_page = web.signed_in(_playbook_page)


def _to_playbook(playbook_id: str, **query: str) -> RedirectResponse:
    """303 to a playbook's page at its title: a redirect without a fragment would keep the
    form's (the section it was posted from) and open the page scrolled down there."""
    where = urlencode(query)
    return RedirectResponse(f"/console/playbooks/{quote(playbook_id)}?{where}#playbook-title", 303)


def _document(form: FormData) -> str:
    # Browsers send a textarea's lines with CRLF; the document is stored as the author wrote
    # it, with the newlines every other client sends.
    return str(form.get("document") or "").replace("\r\n", "\n")


async def _publish(
    request: Request, found: sessions.Session, playbook_id: str, text: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the published version, None) or (None, what the page shows instead: the draft with its
    errors at their lines, or the API's refusal)."""
    try:
        published = await web.call_api(
            request,
            found,
            api.publish_playbook,
            path_params={"playbook_id": playbook_id},
            body={"document": text},
            method="PUT",
        )
    except ApiError as exc:
        if exc.code != "invalid_playbook":
            return None, {"publish_error": exc.message}
        # The publish's 422 names the first issue; the validator lists every one of them.
        checked = await _check(request, found, text, playbook_id)
        errors = checked["errors"] or _located(
            text, [{"field": exc.field or "", "code": exc.code, "message": exc.message}]
        )
        return None, {"draft": {"errors": errors, "lines": _listing(text, errors)}}
    return published, {}


@web.posted
async def publish_new(request: Request, found: sessions.Session, form: FormData) -> Response:
    """The list page's form: a playbook under a new id (an id in use is refused: its own page
    publishes its next version, so no one adds a version to a playbook by mistyping)."""
    playbook_id = str(form.get("playbook_id") or "").strip()
    text = _document(form)
    shown: dict[str, Any] = {"form": {"playbook_id": playbook_id, "document": text}}
    try:
        await web.call_api(
            request, found, api.get_playbook, path_params={"playbook_id": playbook_id}
        )
    except ApiError as exc:
        if exc.status_code != 404:
            raise
    else:
        shown["publish_error"] = (
            f"A playbook {playbook_id!r} exists already: publish its next version on its page."
        )
        return await _list_page(request, found, shown, 409)
    published, refused = await _publish(request, found, playbook_id, text)
    if published is None:
        return await _list_page(request, found, shown | refused, 422)
    return _to_playbook(playbook_id, published=str(published["version"]))


@web.posted
async def publish_version(request: Request, found: sessions.Session, form: FormData) -> Response:
    playbook_id = request.path_params["playbook_id"]
    text = _document(form)
    published, refused = await _publish(request, found, playbook_id, text)
    if published is None:
        return await _playbook_page(request, found, {"form": {"document": text}, **refused}, 422)
    return _to_playbook(playbook_id, published=str(published["version"]))


@web.posted
async def clone(request: Request, found: sessions.Session, form: FormData) -> Response:
    playbook_id = request.path_params["playbook_id"]
    new_id = str(form.get("clone_id") or "").strip()
    body: dict[str, Any] = {"playbook_id": new_id}
    version = str(form.get("version") or "")
    if version.isdigit():
        body["version"] = int(version)
    try:
        await web.call_api(
            request,
            found,
            api.clone_playbook,
            path_params={"playbook_id": playbook_id},
            body=body,
        )
    except ApiError as exc:
        if exc.status_code == 404 and exc.field is None:
            return await _playbook_page(request, found)  # gone meanwhile: the page says so
        extra = {"form": {"clone_id": new_id}, "clone_error": exc.message}
        return await _playbook_page(request, found, extra, exc.status_code)
    return _to_playbook(new_id, cloned_from=playbook_id)


@web.posted
async def delete(request: Request, found: sessions.Session, _form: FormData) -> Response:
    playbook_id = request.path_params["playbook_id"]
    try:
        deleted = await web.call_or_missing(
            request, found, api.delete_playbook, PLAYBOOK, playbook_id, method="DELETE"
        )
    except ApiError as exc:
        return await _playbook_page(request, found, {"delete_error": exc.message}, exc.status_code)
    if isinstance(deleted, Response):
        return deleted
    return RedirectResponse(
        "/console/playbooks?" + urlencode({"deleted": playbook_id}) + "#playbooks-notice", 303
    )


routes = [
    Route("/playbooks", list_page, methods=["GET"]),
    Route("/playbooks", publish_new, methods=["POST"]),
    Route("/playbooks/{playbook_id}", playbook_page, methods=["GET"]),
    Route("/playbooks/{playbook_id}/publish", publish_version, methods=["POST"]),
    Route("/playbooks/{playbook_id}/clone", clone, methods=["POST"]),
    Route("/playbooks/{playbook_id}/delete", delete, methods=["POST"]),
]
