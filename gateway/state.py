"""The typed state the app's lifespan builds and every request and job can reach."""

from __future__ import annotations

from typing import TYPE_CHECKING, NotRequired, TypedDict, cast

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from gateway.db import SessionFactory
from gateway.settings import Settings
from twilio_sandbox import Sandbox

if TYPE_CHECKING:
    from gateway.models import Account, ApiKey


class AppState(TypedDict):
    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    redis: ArqRedis
    sandbox: NotRequired[Sandbox | None]  # the built-in Twilio, when no credentials are set
    worker_here: NotRequired[bool]  # the worker runs in this process (`gateway run`)


def app_state(request: Request) -> AppState:
    return cast(AppState, request.scope["state"])


def current_account(request: Request) -> Account:
    """The account the request authenticated as (set by the API-key middleware)."""
    return cast("Account", request.scope["state"]["account"])


def current_key(request: Request) -> ApiKey:
    return cast("ApiKey", request.scope["state"]["api_key"])
