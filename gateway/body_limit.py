"""A request-body limit per path prefix, enforced at the ASGI level before anything reads the body.

A declared `Content-Length` above the limit is answered 413 without reading a byte. Without one
(chunked), the body is counted as the app receives it; the chunk that passes the limit is not
handed over: the middleware answers 413 itself, closes the connection and aborts the app. So a
request holds at most the limit (plus the server's read buffer) in memory, whatever it sends.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_response
from gateway.settings import SANDBOX_PATH

# Twilio's webhooks are a few KB of form fields; the API's JSON and playbook documents stay
# under 1 MB (gateway.api.requests checks the same figure); the sandbox takes Twilio
# REST parameters (a text is at most 1,600 characters) and small control documents.
TWILIO_LIMIT = 64 * 1024
API_LIMIT = 1_000_000
SANDBOX_LIMIT = 256 * 1024
UNSUBSCRIBE_LIMIT = 4 * 1024
CONSOLE_LIMIT = 16 * 1024
GATEWAY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/twilio", TWILIO_LIMIT),  # the SMS routes and the voice routes (/twilio/voice/...)
    (SANDBOX_PATH, SANDBOX_LIMIT),
    ("/unsubscribe", UNSUBSCRIBE_LIMIT),  # the email opt-out page and RFC 8058 one-click
    ("/console", CONSOLE_LIMIT),  # sign-in and contact-check forms: a key, a phone, a token
)


class BodyTooLarge(Exception):
    """Raised into the app by `receive` once the body passed its limit (the 413 is already sent)."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            # The server already refuses a malformed header; non-digits here count as huge.
            return int(value) if value.isdigit() and value.isascii() else -1
    return None


class BodyLimitMiddleware:
    """Refuses bodies larger than the limit of the longest matching path prefix (413 JSON)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: Sequence[tuple[str, int]] = GATEWAY_LIMITS,
        default: int = API_LIMIT,
    ) -> None:
        self.app = app
        self.limits = sorted(limits, key=lambda item: len(item[0]), reverse=True)
        self.default = default

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            await _refuse(scope, limit, send)
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _refuse(scope, limit, send)
                    raise BodyTooLarge(f"request body passed {limit} bytes")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out; whatever the app answers to the abort is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge:
            if started:
                raise  # the app had begun its answer: nothing to do but abort the connection


async def _refuse(scope: Scope, limit: int, send: Send) -> None:
    response = error_response(
        413,
        "too_large",
        f"body larger than {limit} bytes",
        headers={"Connection": "close"},  # the rest of the body is not wanted: stop the sender
    )

    async def no_body() -> Message:  # a JSONResponse never reads; this keeps it honest
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)
