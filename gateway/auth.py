"""API-key authentication for `/v1/*`: `Authorization: <key>` or `Authorization: Bearer <key>`,
and the key's scope: what it may call, decided here for every route in one place."""

from __future__ import annotations

import logging
import re
import time
from typing import cast

from arq.connections import ArqRedis
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.accounts import authenticate
from gateway.db import read_alone
from gateway.errors import error_response, is_unavailable, service_unavailable
from gateway.models import KeyScope
from gateway.work import KEY_USED, enqueue_now

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/v1/"
# Recording `last_used_at` on every call would turn each read into a write; once a minute
# per key and process is plenty for "is this key still in use?".
LAST_USED_INTERVAL = 60.0


# `read` keys change nothing: they may use every /v1 route, but only with these methods.
READ_METHODS = frozenset({"GET", "HEAD"})
# What a `compliance` key may call, as (method, the route's path template as the app spells it);
# anything not listed is refused (a new route stays closed to it until added here). The test
# tests/gateway/test_key_scopes.py checks every entry names a real route and walks every route.
SCOPE_ROUTES: dict[KeyScope, frozenset[tuple[str, str]]] = {
    KeyScope.COMPLIANCE: frozenset(
        {
            ("GET", "/v1/opt-outs"),  # the ledger
            ("POST", "/v1/opt-outs"),  # record a manual opt-out (with its actor and note)
            ("GET", "/v1/opt-outs/export"),  # its export
            ("GET", "/v1/opt-outs/{phone}"),  # the compliance check: a phone's status now
        }
    ),
}


def _compiled(routes: frozenset[tuple[str, str]]) -> list[tuple[str, re.Pattern[str]]]:
    return [(method, compile_path(template)[0]) for method, template in sorted(routes)]


_SCOPE_PATTERNS = {scope: _compiled(routes) for scope, routes in SCOPE_ROUTES.items()}


def scope_allows(scope: KeyScope, method: str, path: str) -> bool:
    """Whether a key of `scope` may make this request (before routing: by method and path)."""
    if scope == KeyScope.FULL:
        return True
    if scope == KeyScope.READ:
        return method in READ_METHODS
    # Starlette answers HEAD wherever it answers GET; so does a scope.
    wanted = "GET" if method == "HEAD" else method
    return any(
        allowed == wanted and pattern.match(path) is not None
        for allowed, pattern in _SCOPE_PATTERNS.get(scope, [])
    )


def scope_refusal(scope: KeyScope, method: str, path: str) -> str:
    """The 403's message: which scopes would do."""
    needed = [s.value for s in KeyScope if s != scope and scope_allows(s, method, path)]
    return (
        f"this API key's scope is `{scope.value}`; {method} {path} needs a key with scope "
        + " or ".join(f"`{name}`" for name in needed)
    )


def presented_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, rest = text.partition(" ")
            if rest and scheme.lower() == "bearer":
                text = rest.strip()
            return text or None
    return None


class ApiKeyMiddleware:
    """Rejects `/v1/*` requests without a live key (401) or beyond the key's scope (403
    `scope_forbidden`), and records the caller's account."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._marked: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        secret = presented_key(scope)
        if secret is None:
            response = error_response(
                401, "unauthorized", "missing API key: send `Authorization: <key>`",
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
            await response(scope, receive, send)
            return
        state = scope["state"]
        try:
            # One read: no write lock (on SQLite it never waits for the writers' turn), and on
            # PostgreSQL no transaction around it.
            async with read_alone(state["sessions"]) as session:
                found = await authenticate(session, secret)
        except Exception as exc:
            # This middleware runs outside Starlette's ExceptionMiddleware: an outage raised
            # here would be answered 503 by ServerErrorMiddleware and then re-raised to uvicorn,
            # which logs it as a crash with its traceback. Answer it here, in one log line.
            if not is_unavailable(exc):
                raise
            response = service_unavailable(scope["method"], scope["path"], exc)
            await response(scope, receive, send)
            return
        if found is None:
            response = error_response(
                401,
                "unauthorized",
                "invalid or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        account, key = found
        state["account"], state["api_key"] = account, key
        await self._note_use(state, key.id)
        key_scope = KeyScope(key.scope)
        if not scope_allows(key_scope, scope["method"], scope["path"]):
            message = scope_refusal(key_scope, scope["method"], scope["path"])
            await error_response(403, "scope_forbidden", message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _note_use(self, state: dict[str, object], key_id: str) -> None:
        moment = time.monotonic()
        if moment - self._marked.get(key_id, -LAST_USED_INTERVAL) < LAST_USED_INTERVAL:
            return
        self._marked[key_id] = moment
        # Best effort (a Redis hiccup is logged, never fails an authenticated request): the
        # time a key was last used is a hint, with no row that owes it.
        await enqueue_now(cast(ArqRedis, state["redis"]), KEY_USED, key_id)
