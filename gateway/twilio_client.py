"""The real `twilio` library, pointed at Twilio or at the local sandbox.

The library has no base-URL setting, so the sandbox is reached through an HTTP
client subclass that rewrites `https://api.twilio.com` to the sandbox's URL.
"""

from __future__ import annotations

import base64
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from gateway.retry_after import parse_retry_after

TWILIO_API = "https://api.twilio.com"
FORM = "application/x-www-form-urlencoded"  # the body of Twilio's REST calls and webhooks
# Messaging Services (v1) live on their own host; the sandbox serves both under one base URL.
TWILIO_MESSAGING_API = "https://messaging.twilio.com"

# The library raises TwilioRestException without the response's headers; the HTTP client
# keeps the last answer's Retry-After here, in the caller's own context (task), so a sender can
# honour it. None when the last answer carried none.
_retry_after: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)


def last_retry_after() -> float | None:
    """Seconds Twilio asked us to wait in the last answer this task received, if it did."""
    return _retry_after.get()


def _rewrite(url: str, base_url: str) -> str:
    for host in (TWILIO_API, TWILIO_MESSAGING_API):
        if url.startswith(host):
            return base_url.rstrip("/") + url[len(host) :]
    return url


class SandboxAsyncHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Async HTTP client for the twilio library; sends api.twilio.com requests to
    `base_url` when one is given (None: real Twilio)."""

    def __init__(self, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    # Same signature as the library's method it overrides, hence the positional arguments.
    async def request(  # noqa: PLR0917
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        allow_redirects: bool = False,
    ) -> Response:
        if self.base_url is not None:
            url = _rewrite(url, self.base_url)
        if auth is not None:
            # aiohttp 3.14 deprecates its BasicAuth object, which the library passes;
            # the header it would have produced is sent instead.
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {token}"}
        body: dict[str, object] | bytes | None = data
        if data and (headers or {}).get("Content-Type", FORM) == FORM:
            # A form (what the library asks for every POST but a JSON API's), encoded as aiohttp
            # would (`FormData` of a dict: `urlencode(..., doseq=True)`, UTF-8) but without its
            # multipart machinery, which it builds for every request whatever its body: a
            # quarter of a text's request to Twilio on the CPU. Any other body goes as it came.
            body = urlencode(data, doseq=True).encode()
            headers = {**(headers or {}), "Content-Type": FORM}
        # The library's async client ignores its own `timeout` setting; apply it here.
        seconds = timeout if timeout is not None else self.timeout
        response: Response = await super().request(
            method, url, params, body, headers, None, seconds, allow_redirects
        )
        found = (response.headers or {}).get("Retry-After")
        _retry_after.set(parse_retry_after(found))
        return response


def build_twilio_client(
    account_sid: str,
    auth_token: str,
    *,
    api_base_url: str | None = None,
    timeout: float | None = None,
) -> Client:
    """An async-capable twilio Client; `api_base_url` None means real Twilio.

    Call it inside a running event loop (aiohttp binds its session to the loop),
    and close it with `await client.http_client.close()` when done.
    """
    http_client = SandboxAsyncHttpClient(api_base_url, timeout=timeout)
    return Client(account_sid, auth_token, http_client=http_client)
