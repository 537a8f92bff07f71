"""One signed POST to a subscription's URL, and what came back. Used by the delivery job and
by the test tool alike, so a test exercises exactly what a delivery does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.clock import now
from gateway.retry_after import parse_retry_after
from gateway.webhooks import policy, signing
from gateway.webhooks.addresses import AddressRefused, check_url
from gateway.webhooks.payloads import encode

EXCERPT_CHARS = 500
# The most of a response body read; the rest is not our business.
MAX_READ_BYTES = 4096


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code and body excerpt, or an error without a response."""

    status_code: int | None
    excerpt: str | None
    error: str | None
    retry_after: float | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def new_client() -> httpx.AsyncClient:
    """The HTTP client of a worker: 10 s for everything, redirects not followed (a redirect
    could point anywhere, past the address check)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.REQUEST_TIMEOUT),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )


async def post(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    *,
    signing_secrets: list[str],
    delivery_id: str,
    https_required: bool,
    allow_private: bool,
) -> Outcome:
    """Check the address, sign, POST, read a bounded excerpt. Never raises for the endpoint's
    sake: every failure is an Outcome."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        await check_url(url, https_required=https_required, allow_private=allow_private)
    except AddressRefused as exc:
        return Outcome(None, None, f"address refused: {exc}", None, took())
    body = encode(payload)
    timestamp = int(now().timestamp())
    headers = signing.headers(signing_secrets, str(payload["id"]), delivery_id, timestamp, body)
    try:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            chunks = bytearray()
            async for chunk in response.aiter_bytes():
                chunks += chunk
                if len(chunks) >= MAX_READ_BYTES:
                    break
            excerpt = bytes(chunks[:MAX_READ_BYTES]).decode("utf-8", "replace")[:EXCERPT_CHARS]
            return Outcome(
                response.status_code,
                excerpt,
                None,
                parse_retry_after(response.headers.get("retry-after")),
                took(),
            )
    except httpx.TimeoutException:
        return Outcome(None, None, f"timed out after {policy.REQUEST_TIMEOUT:g} s", None, took())
    except httpx.HTTPError as exc:
        return Outcome(None, None, f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS], None, took())


def describe(outcome: Outcome) -> str:
    """One line for logs and `last_error`."""
    if outcome.error:
        return outcome.error
    return f"HTTP {outcome.status_code}"
