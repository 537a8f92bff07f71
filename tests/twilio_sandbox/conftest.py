"""Fixtures for the sandbox's own tests: a sandbox served by uvicorn, the real twilio
client pointed at it, and a receiver app standing in for the gateway's webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from gateway.twilio_client import build_twilio_client
from tests.support.servers import serve
from twilio_sandbox import Sandbox

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "sandbox-test-token"
OUR_NUMBER = "+15005550006"
LEAD = "+15551230001"
REP = "+15551230002"


@dataclass
class Hit:
    path: str
    params: dict[str, str]
    signature_ok: bool


@dataclass
class CallbackRecorder:
    """The gateway's stand-in: records every callback the sandbox makes (webhook hits) and checks
    its signature."""

    base_url: str = ""
    hits: list[Hit] = field(default_factory=list)
    # path -> TwiML (or a function of the params returning TwiML)
    answers: dict[str, str | Callable[[dict[str, str]], str]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url + path

    def at(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


def receiver_app(receiver: CallbackRecorder, validator: RequestValidator) -> Starlette:
    async def hook(request: Request) -> Response:
        form = await request.form()
        params = {k: str(v) for k, v in form.multi_items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        ok = bool(validator.validate(str(request.url), params, signature))
        receiver.hits.append(Hit(request.url.path, params, ok))
        answer = receiver.answers.get(request.url.path, "<Response/>")
        text = answer(params) if callable(answer) else answer
        return PlainTextResponse(text, media_type="application/xml")

    return Starlette(routes=[Route("/{path:path}", hook, methods=["POST", "GET"])])


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackRecorder]:
    rec = CallbackRecorder()
    async with serve(receiver_app(rec, RequestValidator(AUTH_TOKEN))) as url:
        rec.base_url = url
        yield rec


def make_sandbox(**options: object) -> Sandbox:
    return Sandbox(ACCOUNT_SID, AUTH_TOKEN, **options)  # type: ignore[arg-type]


@pytest.fixture
def sandbox(receiver: CallbackRecorder) -> Sandbox:
    sb = make_sandbox()
    sb.add_number(OUR_NUMBER, sms_url=receiver.url("/sms"), voice_url=receiver.url("/voice"))
    return sb


@pytest.fixture
async def sandbox_url(sandbox: Sandbox) -> AsyncIterator[str]:
    async with serve(sandbox.app) as url:
        yield url


@pytest.fixture
async def client(sandbox_url: str) -> AsyncIterator[Client]:
    twilio = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=sandbox_url, timeout=5)
    yield twilio
    await twilio.http_client.close()
