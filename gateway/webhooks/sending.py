"""One signed POST to a subscription's URL, and what came back. Used by the delivery job and
by the test tool alike, so a test exercises exactly what a delivery does.

The request connects only to the addresses `addresses.check_url` approved a moment before: the
HTTP client's network backend takes them from a context variable instead of resolving the name
again (a second lookup is where DNS rebinding would slip a private address in). The Host header
and TLS (SNI and certificate checks) still use the URL's name.
"""

from __future__ import annotations

import ssl
import time
import typing
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from gateway import webhook_policy as policy
from gateway.clock import now
from gateway.job_context import HttpClients
from gateway.retry_after import parse_retry_after
from gateway.webhooks import signing
from gateway.webhooks.addresses import AddressRefused, Target, check_url
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
    # The URL itself can never work (refused by its text): no retry can help.
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


# The checked target of the request in flight in this task; httpcore connects in the task that
# sends the request, so the backend below sees it.
_TARGET: ContextVar[Target | None] = ContextVar("webhook_target", default=None)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to the checked addresses of the current request, never by name."""

    def __init__(self) -> None:
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        target = _TARGET.get()
        if target is None or (host, port) != (target.host, target.port):
            raise httpcore.ConnectError(f"{host}:{port} was not checked")  # fail closed
        failure: Exception = httpcore.ConnectError(f"{host} has no checked address")
        for address in target.addresses:  # in the resolver's order, as a client would
            try:
                return await self._network.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks go over TCP")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, limits: httpx.Limits, verify: ssl.SSLContext | bool) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx takes no network backend: swap in a pool like the one it built, with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(),
        )


def _client(verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    return httpx.AsyncClient(
        transport=_PinnedTransport(limits, verify),
        timeout=httpx.Timeout(policy.REQUEST_TIMEOUT),
        follow_redirects=False,  # a redirect could point anywhere, past the address check
        trust_env=False,  # no proxy from the environment: we connect where we checked
    )


class Clients:
    """The HTTP clients of a worker (or of one test-tool request), made on first use.

    Two connection pools: a kept-alive connection is reused by host name without a new connect,
    so one opened for an account allowed private addresses must never serve one that isn't.
    """

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._verify = verify
        self._pools: dict[bool, httpx.AsyncClient] = {}

    def for_policy(self, allow_private: bool) -> httpx.AsyncClient:
        if allow_private not in self._pools:
            self._pools[allow_private] = _client(self._verify)
        return self._pools[allow_private]

    async def aclose(self) -> None:
        for client in self._pools.values():
            await client.aclose()
        self._pools.clear()

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


def new_client(verify: ssl.SSLContext | bool = True) -> Clients:
    """The HTTP clients of a worker: 10 s for everything, redirects not followed, connections
    only to checked addresses. `verify` is for tests with their own certificate authority."""
    return Clients(verify)


async def post(
    clients: HttpClients,
    url: str,
    payload: dict[str, Any],
    *,
    signing_secrets: list[str],
    delivery_id: str,
    https_required: bool,
    allow_private: bool,
) -> Outcome:
    """Check the address, sign, POST to the checked address, read a bounded excerpt. Never
    raises for the endpoint's sake: every failure is an Outcome."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = await check_url(url, https_required=https_required, allow_private=allow_private)
    except AddressRefused as exc:
        return Outcome(None, None, f"address refused: {exc}", None, took(), exc.permanent)
    body = encode(payload)
    timestamp = int(now().timestamp())
    headers = signing.headers(signing_secrets, str(payload["id"]), delivery_id, timestamp, body)
    client = clients.for_policy(allow_private)
    pinned = _TARGET.set(target)
    try:
        async with client.stream("POST", target.url, content=body, headers=headers) as response:
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
    except httpx.InvalidURL as exc:  # the check should have refused it; never crash the job
        return Outcome(None, None, f"invalid URL: {exc}"[:EXCERPT_CHARS], None, took(), True)
    finally:
        _TARGET.reset(pinned)


def describe(outcome: Outcome) -> str:
    """One line for logs and `last_error`."""
    if outcome.error:
        return outcome.error
    return f"HTTP {outcome.status_code}"
