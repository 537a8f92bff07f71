"""The console's Webhooks section: `/console/webhooks` (the account's subscriptions and a form to
add one) and `/console/webhooks/{id}` (one subscription: its recent deliveries with status,
response code and body, replay of one delivery or a time range, enable/disable, delete, rotate
the signing secret, and the test tool that sends a sample activity and shows the answer).

Every read and change is the API's own handler (`/v1/webhooks...`, `/v1/deliveries/{id}/replay`)
called through web.call_api, so the SSRF policy, the label validation, the account scoping and
the 404s are the API's. A signing secret appears only on the answer to the POST that made it
(create, rotate): the API shows it that once, and so does the console (`no-store`, never on the
subscription's page).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.api import playbooks
from gateway.api import webhooks as api
from gateway.console import sessions, web
from gateway.errors import ApiError
from gateway.models import DeliveryStatus
from gateway.state import app_state
from gateway.webhooks.labels import available_labels

DELIVERIES_SHOWN = 50
STATUSES = tuple(status.value for status in DeliveryStatus)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


WEBHOOK = web.Kind("webhook", "/console/webhooks", param="webhook_id")


def _activities(text: str) -> list[str] | str:
    """The form's activities field as the API takes it: "all" or a list of labels."""
    labels = [part for part in text.replace(",", " ").split() if part]
    return "all" if not labels or labels == ["all"] else labels


# The list


async def _list_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    context = await web.base_context(request, found)
    listed = await web.call_api(request, found, api.list_webhooks)
    books = await web.call_api(request, found, playbooks.list_playbooks)
    context.update(
        {
            "webhooks": listed["data"],
            "playbooks": books["data"],
            "error": None,
            "form": {"activities": "all", "url": "", "playbook_id": "", "description": ""},
        }
    )
    context.update(extra or {})
    return web.page(request, "webhooks.html", context, status)


webhooks_page = web.signed_in(_list_page)


@web.posted
async def create(request: Request, found: sessions.Session, form: FormData) -> Response:
    names = ("url", "activities", "playbook_id", "description")
    shown = {name: _field(form, name) for name in names}
    body: dict[str, Any] = {"url": shown["url"], "activities": _activities(shown["activities"])}
    if shown["playbook_id"]:
        body["playbook_id"] = shown["playbook_id"]
    if shown["description"]:
        body["description"] = shown["description"]
    try:
        created = await web.call_api(request, found, api.create_webhook, body=body)
    except ApiError as exc:
        return await _list_page(
            request, found, {"error": web.api_message(exc), "form": shown}, exc.status_code
        )
    return await _secret_page(request, found, created, "created")


async def _secret_page(
    request: Request, found: sessions.Session, webhook: dict[str, Any], why: str
) -> Response:
    """The one page that shows a signing secret: the answer to the POST that made it."""
    context = await web.base_context(request, found)
    context.update({"webhook": webhook, "why": why})
    return web.page(request, "webhook_secret.html", context)


# One subscription


async def _webhook_page(
    request: Request,
    found: sessions.Session,
    webhook_id: str,
    extra: dict[str, Any] | None = None,
    status: int = 200,
    *,
    test_playbook: str | None = None,
) -> Response:
    webhook = await web.call_or_missing(request, found, api.get_webhook, WEBHOOK, webhook_id)
    if isinstance(webhook, Response):
        return webhook
    context = await web.base_context(request, found)
    path = {"webhook_id": webhook_id}
    params = request.query_params
    shown = {name: params.get(name, "").strip() for name in ("status", "before")}
    query = {name: value for name, value in shown.items() if value}
    query["limit"] = str(DELIVERIES_SHOWN)
    context.update({"deliveries": [], "older_url": None, "deliveries_error": None})
    try:
        listed = await web.call_api(
            request, found, api.list_deliveries, query=query, path_params=path
        )
    except ApiError as exc:
        context["deliveries_error"] = web.api_message(exc)
    else:
        context["deliveries"] = listed["data"]
        if listed["next_before"]:
            following = {k: v for k, v in query.items() if k != "limit"}
            following["before"] = listed["next_before"]
            context["older_url"] = f"/console/webhooks/{webhook_id}?" + urlencode(following)
    books = (await web.call_api(request, found, playbooks.list_playbooks))["data"]
    # The test tool: a playbook picked (by the "Show its activities" GET), else the
    # subscription's own, else the first; its labels are what the test endpoint accepts.
    if test_playbook is None:
        test_playbook = params.get("test_playbook", webhook["playbook_id"] or "")
    chosen = test_playbook
    if chosen and chosen not in {book["id"] for book in books}:
        chosen = ""
    if not chosen and books:
        chosen = books[0]["id"]
    async with app_state(request)["sessions"]() as db:
        labels = sorted(await available_labels(db, found.account.id, chosen or None))
    context.update(
        {
            "webhook": webhook,
            "statuses": STATUSES,
            "query": shown,
            "playbooks": books,
            "test_playbook": chosen,
            "test_labels": labels,
            "test_activity": "",
            "replayed": params.get("replayed", ""),
            "replay": {"since": "", "until": ""},
            "error": None,
        }
    )
    context.update(extra or {})
    return web.page(request, "webhook.html", context, status)


@web.signed_in
async def webhook_page(request: Request, found: sessions.Session) -> Response:
    return await _webhook_page(request, found, request.path_params["webhook_id"])


def _back(webhook_id: str, **query: str) -> RedirectResponse:
    suffix = "?" + urlencode(query) if query else ""
    return RedirectResponse(f"/console/webhooks/{webhook_id}{suffix}", status_code=303)


@web.posted
async def set_enabled(request: Request, found: sessions.Session, form: FormData) -> Response:
    webhook_id = request.path_params["webhook_id"]
    wanted = form.get("enabled")
    if wanted not in ("true", "false"):
        return await _webhook_page(request, found, webhook_id, {"error": "enabled: true or false"})
    body = {"enabled": wanted == "true"}
    updated = await web.call_or_missing(
        request, found, api.update_webhook, WEBHOOK, webhook_id, body=body, method="PATCH"
    )
    return updated if isinstance(updated, Response) else _back(webhook_id)


@web.posted
async def delete(request: Request, found: sessions.Session, _form: FormData) -> Response:
    webhook_id = request.path_params["webhook_id"]
    deleted = await web.call_or_missing(
        request, found, api.delete_webhook, WEBHOOK, webhook_id, method="DELETE"
    )
    if isinstance(deleted, Response):
        return deleted
    return RedirectResponse("/console/webhooks", status_code=303)


@web.posted
async def rotate(request: Request, found: sessions.Session, _form: FormData) -> Response:
    webhook_id = request.path_params["webhook_id"]
    rotated = await web.call_or_missing(
        request, found, api.rotate_secret, WEBHOOK, webhook_id, method="POST"
    )
    if isinstance(rotated, Response):
        return rotated
    return await _secret_page(request, found, rotated, "rotated")


@web.posted
async def replay_one(request: Request, found: sessions.Session, form: FormData) -> Response:
    """`POST /v1/deliveries/{id}/replay`, then back to the delivery's own subscription page
    (the API's answer names it); the form's webhook_id only places an error."""
    delivery_id = request.path_params["delivery_id"]
    try:
        replayed = await web.call_api(
            request,
            found,
            api.replay_delivery,
            path_params={"delivery_id": delivery_id},
            method="POST",
        )
    except ApiError as exc:
        if exc.status_code == 404:
            return await web.missing(request, found, web.Kind("delivery", WEBHOOK.back))
        extra = {"error": web.api_message(exc)}
        return await _webhook_page(request, found, _field(form, "webhook_id"), extra, 409)
    return _back(replayed["webhook_id"], replayed=delivery_id)


def _instant(text: str, name: str) -> str:
    """A UTC time typed as 2026-01-31T09:00 (or with a space, or with its offset), as the
    API's ISO 8601 with an offset; ValueError naming the field when it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"{name}: a time like 2026-01-31T09:00 (UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


@web.posted
async def replay_range(request: Request, found: sessions.Session, form: FormData) -> Response:
    webhook_id = request.path_params["webhook_id"]
    shown = {name: _field(form, name) for name in ("since", "until")}
    extra: dict[str, Any] = {"replay": shown}
    try:
        query = {"since": _instant(shown["since"], "since")}
        if shown["until"]:
            query["until"] = _instant(shown["until"], "until")
    except ValueError as exc:
        extra["replay_error"] = str(exc)
        return await _webhook_page(request, found, webhook_id, extra, 422)
    try:
        result = await web.call_or_missing(
            request, found, api.replay_webhook, WEBHOOK, webhook_id, query=query, method="POST"
        )
    except ApiError as exc:
        extra["replay_error"] = web.api_message(exc)
        return await _webhook_page(request, found, webhook_id, extra, exc.status_code)
    if isinstance(result, Response):
        return result
    extra["replay_result"] = result["replayed"]
    return await _webhook_page(request, found, webhook_id, extra)


@web.posted
async def send_test(request: Request, found: sessions.Session, form: FormData) -> Response:
    webhook_id = request.path_params["webhook_id"]
    chosen = {name: _field(form, name) for name in ("playbook_id", "activity")}
    query = {name: value for name, value in chosen.items() if value}
    extra: dict[str, Any] = {"test_activity": chosen["activity"]}
    try:
        answer = await web.call_or_missing(
            request, found, api.test_webhook, WEBHOOK, webhook_id, query=query, method="POST"
        )
    except ApiError as exc:
        extra["test_error"] = web.api_message(exc)
        return await _webhook_page(
            request, found, webhook_id, extra, exc.status_code, test_playbook=chosen["playbook_id"]
        )
    if isinstance(answer, Response):
        return answer
    answer["payload_json"] = json.dumps(answer["payload"], indent=2)
    extra["test_result"] = answer
    return await _webhook_page(
        request, found, webhook_id, extra, test_playbook=chosen["playbook_id"]
    )


routes = [
    Route("/webhooks", webhooks_page, methods=["GET"]),
    Route("/webhooks", create, methods=["POST"]),
    Route("/webhooks/{webhook_id}", webhook_page, methods=["GET"]),
    Route("/webhooks/{webhook_id}/enabled", set_enabled, methods=["POST"]),
    Route("/webhooks/{webhook_id}/delete", delete, methods=["POST"]),
    Route("/webhooks/{webhook_id}/rotate-secret", rotate, methods=["POST"]),
    Route("/webhooks/{webhook_id}/replay", replay_range, methods=["POST"]),
    Route("/deliveries/{delivery_id}/replay", replay_one, methods=["POST"]),
    Route("/webhooks/{webhook_id}/test", send_test, methods=["POST"]),
]
