"""API-key authentication for `/v1/*`: `Authorization: <key>` or `Authorization: Bearer <key>`."""

from __future__ import annotations

import logging
import time
from typing import cast

from arq.connections import ArqRedis
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.accounts import authenticate
from gateway.db import transaction
from gateway.errors import error_response, is_unavailable, service_unavailable

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/v1/"
# Recording `last_used_at` on every call would turn each read into a write; once a minute
# per key and process is plenty for "is this key still in use?".
LAST_USED_INTERVAL = 60.0


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
    """Rejects `/v1/*` requests without a live key (401) and records the caller's account."""

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
            async with transaction(state["sessions"]) as session:
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
        await self.app(scope, receive, send)

    async def _note_use(self, state: dict[str, object], key_id: str) -> None:
        moment = time.monotonic()
        if moment - self._marked.get(key_id, -LAST_USED_INTERVAL) < LAST_USED_INTERVAL:
            return
        self._marked[key_id] = moment
        redis = cast(ArqRedis, state["redis"])
        try:
            await redis.enqueue_job("keys.mark_used", key_id, _job_id=f"keys.mark_used:{key_id}")
        except Exception:  # a Redis hiccup must not fail an authenticated request
            log.warning("could not enqueue keys.mark_used key=%s", key_id, exc_info=True)
