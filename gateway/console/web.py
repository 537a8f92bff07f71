"""What every console page shares: the templates, the security headers and the scope gate on
the mount, the session cookie, and the answers a page gives when signed out or forged."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.console import sessions
from gateway.errors import ApiError
from gateway.state import app_state

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def when(value: str | datetime | None) -> Markup:
    """A time the API gives (ISO 8601, UTC) as people read it, to the second, inside a <time>
    element that keeps the exact value for machines and a hover."""
    if value is None or value == "":
        return Markup("")
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    exact = moment.isoformat().replace("+00:00", "Z")
    shown = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(exact, shown)


templates.env.filters["when"] = when
KEY_SCOPE_STATE = "console_key_scope"


def shows(request: Request, path: str) -> bool:
    """Whether the nav shows a link to `path`: the signed-in key's scope may open it (as
    ScopeGate decides), so a `compliance` key sees only the Compliance link."""
    key_scope = request.scope.get("state", {}).get(KEY_SCOPE_STATE)
    return key_scope is None or sessions.page_allowed(key_scope, "GET", path)


templates.env.globals["shows"] = shows
# No inline script or style anywhere: the pages load their own stylesheet and their own scripts
# (static/live.js, which refreshes `data-live-src` parts of a page) from the gateway, nothing else.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class SecurityHeaders:
    """The CSP and friends on every console response (pages, redirects, the stylesheet)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ScopeGate:
    """Refuses (403) the console pages the signed-in key's scope does not allow, for every page
    in one place (sessions.page_allowed); signed-out requests pass on to their page's redirect."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = await session_of(Request(scope))
            if found is not None:
                # For the nav: a page links only to the sections this key may open.
                scope.setdefault("state", {})[KEY_SCOPE_STATE] = found.scope
            if found is not None and not sessions.page_allowed(
                found.scope, scope["method"], scope["path"]
            ):
                response = Response(
                    f"403 Forbidden: this API key's scope is {found.scope.value}, which does not "
                    "allow this page. Sign in with a key that does.",
                    status_code=403,
                    media_type="text/plain",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def secure(request: Request) -> bool:
    return app_state(request)["settings"].environment == "production"


def set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=secure(request),
    )


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["cache-control"] = "no-store"  # pages hold the account's data
    return response


async def session_of(request: Request) -> sessions.Session | None:
    state = app_state(request)
    async with state["sessions"]() as db:
        return await sessions.resume(state["redis"], db, request.cookies.get(sessions.COOKIE))


def to_sign_in() -> RedirectResponse:
    return RedirectResponse("/console/sign-in", status_code=303)


def forbidden() -> Response:
    return Response(
        "403 Forbidden: the form's security token is missing or wrong. Reload the page and "
        "try again.",
        status_code=403,
        media_type="text/plain",
    )


async def signed_in_post(request: Request) -> tuple[sessions.Session, FormData] | Response:
    """A console POST's session and form once its CSRF token checks out; otherwise the answer
    (to sign-in when signed out, 403 when the token is missing or wrong)."""
    found = await session_of(request)
    if found is None:
        return to_sign_in()
    form = await request.form()
    token = form.get("csrf")
    redis = app_state(request)["redis"]
    if not await sessions.csrf_ok(redis, found.nonce, token if isinstance(token, str) else None):
        return forbidden()
    return found, form


Handler = Callable[[Request], Awaitable[Response]]
SessionHandler = Callable[[Request, sessions.Session], Awaitable[Response]]
FormHandler = Callable[[Request, sessions.Session, FormData], Awaitable[Response]]


def signed_in(handler: SessionHandler) -> Handler:
    """A console GET route for `handler(request, session)`: signed out, it answers the redirect
    to sign-in instead."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        found = await session_of(request)
        if found is None:
            return to_sign_in()
        return await handler(request, found)

    return route


def posted(handler: FormHandler) -> Handler:
    """A console POST route for `handler(request, session, form)`, called once the form's CSRF
    token checks out; otherwise signed_in_post's answer (sign-in, or 403)."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        checked = await signed_in_post(request)
        if isinstance(checked, Response):
            return checked
        return await handler(request, *checked)

    return route


async def base_context(request: Request, found: sessions.Session) -> dict[str, Any]:
    """What every signed-in page's template gets: the account (the header, the nav) and the
    CSRF token its forms post back."""
    return {
        "account": found.account,
        "csrf": await sessions.csrf_token(app_state(request)["redis"], found.nonce),
    }


def api_message(exc: ApiError) -> str:
    """The API's refusal as a page shows it: the field at fault, then the API's words (most of
    which already start with their field: "step: ...", named once)."""
    if exc.field and not exc.message.startswith(exc.field):
        return f"{exc.field}: {exc.message}"
    return exc.message


@dataclass(frozen=True)
class Kind:
    """A kind of thing a section shows, for its 404 page: what one is called ("webhook") and
    the link back to its section."""

    what: str
    back: str
    back_label: str = "Back"
    param: str = ""  # the name of one's id in the API's path ("webhook_id")


async def missing(request: Request, found: sessions.Session, kind: Kind) -> Response:
    """The 404 page for a thing this account has no such one of (another account's id, a
    deleted one, a typo), with a link back to its section."""
    context = await base_context(request, found)
    context.update({"what": kind.what, "back": kind.back, "back_label": kind.back_label})
    return page(request, "missing.html", context, status=404)


async def call_api(
    request: Request,
    found: sessions.Session,
    handler: Handler,
    *,
    query: dict[str, str] | None = None,
    path_params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    method: str | None = None,
) -> Any:
    """What an API handler answers for the session's account, as parsed JSON: the pages call the
    API's own code (its validation, its transaction, its account scoping) rather than a copy.
    With `body` the handler sees a POST with that JSON; `method` names another (e.g. DELETE,
    with an empty body). Its ApiError (a 404, a 422 naming the field, a 409) propagates as the
    API would raise it, for the page to show; so does an error the handler answers rather than
    raises (`error_with`, e.g. a 409 `gate_blocked`), rebuilt as an ApiError."""
    scope: dict[str, Any] = {
        **request.scope,
        "query_string": urlencode(query or {}).encode(),
        "path_params": path_params or {},
        "state": {**request.scope["state"], "account": found.account, "api_key": found.key},
    }
    receive = request.receive
    if body is not None or method is not None:
        payload = json.dumps(body).encode() if body is not None else b""
        scope["method"] = method or "POST"
        scope["headers"] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]

        async def receive() -> Message:
            return {"type": "http.request", "body": payload, "more_body": False}

    response = await handler(Request(scope, receive))
    answer = json.loads(bytes(response.body)) if response.body else None
    if response.status_code >= 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        error = error if isinstance(error, dict) else {}
        raise ApiError(
            response.status_code,
            str(error.get("code", "error")),
            str(error.get("message", f"the API answered {response.status_code}")),
            error["field"] if isinstance(error.get("field"), str) else None,
        )
    return answer


async def call_or_missing(
    request: Request,
    found: sessions.Session,
    handler: Handler,
    kind: Kind,
    thing_id: str,
    **call: Any,
) -> Any:
    """call_api for one thing (`thing_id` as the API path's `kind.param`), with the API's 404
    (no such thing in this account) answered as the missing page, returned rather than raised;
    the API's other refusals propagate for the page to show."""
    try:
        return await call_api(request, found, handler, path_params={kind.param: thing_id}, **call)
    except ApiError as exc:
        if exc.status_code != 404:
            raise
        return await missing(request, found, kind)
