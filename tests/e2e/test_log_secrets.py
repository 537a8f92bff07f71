"""At INFO, the logs of a webhook delivery and of a text sent through the twilio library carry
no URL query, token or message body: logging configured as `gateway` configures it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import cli, logs
from gateway.db import transaction
from gateway.webhooks.addresses import set_private_allowed
from tests.support.servers import serve
from tests.support.stack import LEAD, Stack

TOKEN = "tok-4f1d9c0e-secret"
BODY = "your code is 771245"


@pytest.fixture
def gateway_logging(stack: Stack, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The CLI's logging setup at INFO, undone afterwards (logger levels are process-wide)."""
    names = [*logs.CHATTY_LOGGERS, logs.ACCESS_LOGGER]
    saved = {name: logging.getLogger(name).level for name in names}
    access = logging.getLogger(logs.ACCESS_LOGGER)
    filters = list(access.filters)
    stack.settings.log_level = "INFO"
    cli._configure_logging(stack.settings)
    caplog.set_level(logging.INFO)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        access.filters = filters


async def _receiver_url() -> Starlette:
    async def ok(_request: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[Route("/hook", ok, methods=["POST"])])


@pytest.mark.usefixtures("gateway_logging")
async def test_deliveries_and_twilio_calls_log_no_secrets(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    async with transaction(stack.sessions) as session:
        await set_private_allowed(session, stack.account_id, True)
    async with serve(await _receiver_url()) as receiver:
        created = await stack.api.post(
            "/v1/webhooks", json={"url": f"{receiver}/hook?token={TOKEN}"}
        )
        assert created.status_code == 201, created.text
        hook_id = created.json()["id"]
        tested = await stack.api.post(f"/v1/webhooks/{hook_id}/test?activity=started")
        assert tested.status_code == 200, tested.text
        assert tested.json()["status_code"] == 200  # the delivery happened, through httpx

    sent = await stack.api.post("/v1/messages", json={"phone": LEAD, "body": BODY})
    assert sent.status_code == 201, sent.text
    await stack.run_worker()
    [create] = stack.creates(To=LEAD)  # a REST call through the twilio library
    assert (create.get("Body") or "").startswith(BODY)

    lines = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert lines, "nothing was logged at all: the check below would prove nothing"
    assert not [line for line in lines if TOKEN in line[1]]  # httpx logged the delivery's URL
    assert not [line for line in lines if line[0].startswith("twilio")]  # ~10 lines a REST call
    for name, text in lines:
        assert BODY not in text and stack.settings.twilio_token not in text, (name, text)
        assert not name.startswith(("httpx", "httpcore")), (name, text)
