"""What an arq job reads from its worker: one typed `JobContext`, built once at worker startup.

arq hands every job a plain dict (its own keys such as `job_try`, and whatever `on_startup`
put there). The worker stores a `JobContext` in it under one key; a job calls
`job_context(ctx)` at its top and then reads attributes (`jc.sessions`, `jc.redis`,
`jc.twilio`, ...), so a misspelt or missing resource is a type error, not a KeyError at run
time. Callers outside a worker (tests, bench) hand a job `as_ctx(jc)`.

This module sits in the bottom layer so that every job module, in whatever layer, can import it;
the rate limiter and the webhooks' HTTP clients belong to channel modules above it, so they are
typed here by what jobs call on them (Protocols), and the worker builds the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from arq.connections import ArqRedis
from twilio.rest import Client

from gateway.db import SessionFactory
from gateway.settings import Settings

KEY = "job_context"  # the one worker-context key a job reads


class RateLimiter(Protocol):
    """Per-sender send slots shared by every worker (`gateway.sms.ratelimit.SenderRateLimiter`)."""

    async def reserve(self, sender: str, per_second: float) -> float: ...


class HttpClients(Protocol):
    """The webhooks' HTTP clients (`gateway.webhooks.sending.Clients`): one pool per
    private-address policy."""

    def for_policy(self, allow_private: bool) -> aiohttp.ClientSession: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    sessions: SessionFactory
    redis: ArqRedis
    twilio: Client
    rate_limiter: RateLimiter
    http: HttpClients


def job_context(ctx: Mapping[str, Any]) -> JobContext:
    """The worker's `JobContext`, from the dict arq hands a job."""
    found = ctx[KEY]
    if not isinstance(found, JobContext):
        raise TypeError(f"ctx[{KEY!r}] is {type(found).__name__}, not a JobContext")
    return found


def as_ctx(jc: JobContext) -> dict[str, Any]:
    """The dict a job takes, for calling one outside a worker."""
    return {KEY: jc}
