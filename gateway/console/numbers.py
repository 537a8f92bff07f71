"""The console's Numbers page: `/console/numbers`, the numbers the account texts and calls
from. List them, register one, remove one: the first step of the README's "Try it" without curl.

Every read and change is the API's own handler (`GET`/`POST /v1/numbers`,
`DELETE /v1/numbers/{id}`) via web.call_api: the same E.164 check, the same Twilio ownership
check (the built-in sandbox sells any number), the same 409 for a number already registered or
not available to this account, the same account scoping.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.api import numbers
from gateway.console import sessions, web
from gateway.errors import ApiError
from gateway.models import NumberKind
from gateway.state import app_state

KINDS = tuple(kind.value for kind in NumberKind)
FIELDS = ("number", "kind", "messaging_service_sid")
NUMBER = web.Kind("number", "/console/numbers", "Back to numbers")


async def _numbers_page(
    request: Request,
    found: sessions.Session,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    listed = await web.call_api(request, found, numbers.list_numbers)
    context = await web.base_context(request, found)
    context |= {
        "numbers": listed["data"],
        "kinds": KINDS,
        "sandbox": app_state(request).get("sandbox") is not None,
        "error": None,
        "form": {"kind": NumberKind.LONG_CODE.value},
        "notice": {"added": "The number is registered.", "removed": "The number is removed."}.get(
            request.query_params.get("notice", "")
        ),
    }
    context.update(extra or {})
    return web.page(request, "numbers.html", context, status)


async def numbers_page(request: Request) -> Response:
    found = await web.session_of(request)
    if found is None:
        return web.to_sign_in()
    return await _numbers_page(request, found)


async def add_number(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, form = checked
    shown = {name: str(form.get(name) or "").strip() for name in FIELDS}
    body = {name: value for name, value in shown.items() if value}
    try:
        await web.call_api(request, found, numbers.create_number, body=body)
    except ApiError as exc:
        # The form comes back as typed, with the API's word (409 taken, 422 not E.164).
        extra = {"error": web.api_message(exc), "form": shown}
        return await _numbers_page(request, found, extra, exc.status_code)
    return RedirectResponse("/console/numbers?notice=added", status_code=303)


async def remove_number(request: Request) -> Response:
    checked = await web.signed_in_post(request)
    if isinstance(checked, Response):
        return checked
    found, _form = checked
    path = {"number_id": request.path_params["number_id"]}
    try:
        await web.call_api(request, found, numbers.delete_number, path_params=path, method="DELETE")
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        return await web.missing(request, found, NUMBER)
    return RedirectResponse("/console/numbers?notice=removed", status_code=303)


routes = [
    Route("/numbers", numbers_page, methods=["GET"]),
    Route("/numbers", add_number, methods=["POST"]),
    Route("/numbers/{number_id}/delete", remove_number, methods=["POST"]),
]
