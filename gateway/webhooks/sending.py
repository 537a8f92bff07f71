"""One signed POST to a subscription's URL, and what came back. Used by the delivery job and
by the test tool alike, so a test exercises exactly what a delivery does.

The request connects only to the addresses `addresses.check_url` approved a moment before: the
HTTP client's resolver takes them from a context variable instead of resolving the name again
(a second lookup is where DNS rebinding would slip a private address in), and a request whose
host and port are not the checked ones is refused before it connects (an address in the URL
never reaches a resolver). The Host header and TLS (SNI and certificate checks) still use the
URL's name.

aiohttp, not httpx: less CPU per POST (issue 14 measured 1.0 ms against httpx's 4.4); in
bench/RESULTS.md §12 the POST is 6 % of a delivery's worker time.
"""

from __future__ import annotations

import socket
import ssl
import time
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

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


# The checked target of the request in flight in this task; aiohttp resolves (and runs its
# trace hooks) in the task that sends the request, so the resolver below sees it.
_TARGET: ContextVar[Target | None] = ContextVar("webhook_target", default=None)


class Unchecked(aiohttp.ClientConnectionError):
    """A request for a host and port that `check_url` did not approve: never connected."""


def _checked(host: str, port: int) -> Target:
    target = _TARGET.get()
    if target is None or (host, port) != (target.host, target.port):
        raise Unchecked(f"{host}:{port} was not checked")  # fail closed
    return target


class PinnedResolver(AbstractResolver):
    """Answers a name with the checked addresses of the current request, never by DNS."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = _checked(host, port)
        return [  # in the resolver's order, as a client would try them
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in target.addresses
        ]

    async def close(self) -> None:
        return None


async def _refuse_unchecked(
    _session: aiohttp.ClientSession, _context: SimpleNamespace, params: Any
) -> None:
    # Before any connection: an IP address in the URL is connected to without a resolver.
    url: URL = params.url
    _checked(url.raw_host or "", url.port or 0)


def _session(verify: ssl.SSLContext | bool) -> aiohttp.ClientSession:
    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(_refuse_unchecked)
    connector = aiohttp.TCPConnector(
        resolver=PinnedResolver(),
        use_dns_cache=False,  # every request resolves, through the resolver above
        limit=200,
        keepalive_timeout=5,
        ssl=verify,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=policy.REQUEST_TIMEOUT),
        trace_configs=[tracing],
        trust_env=False,  # no proxy from the environment: we connect where we checked
        auto_decompress=False,  # an excerpt of what came, not a decompression bomb
    )


class Clients:
    """The HTTP clients of a worker (or of one test-tool request), made on first use.

    Two connection pools: a kept-alive connection is reused by host name without a new connect,
    so one opened for an account allowed private addresses must never serve one that isn't.
    """

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._verify = verify
        self._pools: dict[bool, aiohttp.ClientSession] = {}

    def for_policy(self, allow_private: bool) -> aiohttp.ClientSession:
        if allow_private not in self._pools:
            self._pools[allow_private] = _session(self._verify)
        return self._pools[allow_private]

    async def aclose(self) -> None:
        for client in self._pools.values():
            await client.close()
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
        async with client.post(
            URL(str(target.url), encoded=True),  # as checked, not quoted again
            data=body,
            headers=headers,  # Content-Type among them
            allow_redirects=False,  # a redirect could point anywhere, past the address check
        ) as response:
            chunks = bytearray()
            async for chunk in response.content.iter_chunked(MAX_READ_BYTES):
                chunks += chunk
                if len(chunks) >= MAX_READ_BYTES:
                    break
            excerpt = bytes(chunks[:MAX_READ_BYTES]).decode("utf-8", "replace")[:EXCERPT_CHARS]
            return Outcome(
                response.status,
                excerpt,
                None,
                parse_retry_after(response.headers.get("retry-after")),
                took(),
            )
    except TimeoutError:
        return Outcome(None, None, f"timed out after {policy.REQUEST_TIMEOUT:g} s", None, took())
    except aiohttp.InvalidURL as exc:  # the check should have refused it; never crash the job
        return Outcome(None, None, f"invalid URL: {exc}"[:EXCERPT_CHARS], None, took(), True)
    except aiohttp.ClientError as exc:
        return Outcome(None, None, f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS], None, took())
    finally:
        _TARGET.reset(pinned)


def describe(outcome: Outcome) -> str:
    """One line for logs and `last_error`."""
    if outcome.error:
        return outcome.error
    return f"HTTP {outcome.status_code}"
