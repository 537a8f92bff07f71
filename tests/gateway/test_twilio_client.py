"""The twilio library's HTTP client as the gateway builds it (`gateway.twilio_client`): what
reaches the server is what the library's own client sends, to a real server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient

from gateway.twilio_client import TWILIO_API, SandboxAsyncHttpClient

PATH = "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json"
# What a text's create sends, with what is awkward to encode: non-ASCII, the form's own
# separators, a list (one field per item) and a number.
FORM: dict[str, object] = {
    "To": "+14155550100",
    "From": "+14155550199",
    "Body": "Héllo & bye: 1+1 = 2, 100% ✓ #fin?",
    "MediaUrl": ["https://a.example/x?y=1&z=2", "https://b.example/é"],
    "ValidityPeriod": 600,
    "StatusCallback": "https://gw.example/twilio/sms/status?message_id=msg_1",
}


@dataclass(frozen=True)
class Seen:
    method: str
    path_qs: str
    content_type: str | None
    body: bytes


@dataclass
class Server:
    url: str
    seen: list[Seen]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen: list[Seen] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            Seen(request.method, request.path_qs, request.headers.get("Content-Type"), body)
        )
        return web.json_response({"sid": "SM1"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Server(f"http://{host}:{port}", seen)
    finally:
        await runner.cleanup()


async def test_a_form_is_sent_as_the_librarys_own_client_sends_it(server: Server) -> None:
    ours = SandboxAsyncHttpClient(server.url)
    theirs = AsyncTwilioHttpClient()
    try:
        await ours.request("POST", TWILIO_API + PATH, data=dict(FORM))
        await theirs.request("POST", server.url + PATH, data=dict(FORM))
        # A read with query parameters and no form: no body either way.
        await ours.request("GET", TWILIO_API + PATH, params={"To": "+14155550100"}, data={})
        await theirs.request("GET", server.url + PATH, params={"To": "+14155550100"}, data={})
        # A body the caller says is not a form (a JSON API's) goes as the library sends it.
        json_type = {"Content-Type": "application/json"}
        await ours.request("POST", TWILIO_API + PATH, data={"a": "1"}, headers=dict(json_type))
        await theirs.request("POST", server.url + PATH, data={"a": "1"}, headers=dict(json_type))
    finally:
        await ours.close()
        await theirs.close()
    post_ours, post_theirs, get_ours, get_theirs, json_ours, json_theirs = server.seen
    assert post_ours == post_theirs
    assert get_ours == get_theirs
    assert json_ours == json_theirs
    assert json_ours.content_type == "application/json"
    assert post_ours.content_type == "application/x-www-form-urlencoded"
    assert parse_qs(post_ours.body.decode(), strict_parsing=True) == {
        "To": ["+14155550100"],
        "From": ["+14155550199"],
        "Body": ["Héllo & bye: 1+1 = 2, 100% ✓ #fin?"],
        "MediaUrl": ["https://a.example/x?y=1&z=2", "https://b.example/é"],
        "ValidityPeriod": ["600"],
        "StatusCallback": ["https://gw.example/twilio/sms/status?message_id=msg_1"],
    }
    assert get_ours.body == b""
    assert get_ours.path_qs == PATH + "?To=%2B14155550100"
