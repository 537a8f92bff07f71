"""Request bodies are limited before they are read: a declared Content-Length above the route's
limit is refused at once, and a chunked body is cut off as soon as it passes the limit, against
the real app under uvicorn on 127.0.0.1 with a raw socket for a client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.accounts import IssuedKey
from gateway.app import create_app
from gateway.body_limit import (
    API_LIMIT,
    CONSOLE_LIMIT,
    SANDBOX_LIMIT,
    TWILIO_LIMIT,
    BodyLimitMiddleware,
)
from gateway.settings import Settings
from tests.support.servers import serve

FORM = "application/x-www-form-urlencoded"
CHUNK = b"x" * 16_384
# uvicorn hands the app what it has buffered: reading pauses past 64 KiB, but one socket read
# (up to 256 KiB) can land first. Far below what the client sends (16 MB).
SERVER_BUFFER = 512 * 1024
CLIENT_SENDS = 16 * 1024 * 1024
ANSWER_TIMEOUT = 30.0  # generous: the refused request must be answered, not wait for its body


@dataclass
class Counted:
    """The request-body bytes the server handed to the app, per request."""

    bodies: list[int]


def counting(app: ASGIApp, counted: Counted) -> ASGIApp:
    """Wraps the app to count the body bytes uvicorn gives it (observes, changes nothing)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        index = len(counted.bodies)
        counted.bodies.append(0)

        async def counting_receive() -> Message:
            message = await receive()
            counted.bodies[index] += len(message.get("body", b""))
            return message

        await app(scope, counting_receive, send)

    return wrapped


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines if line)
    }
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def _post_chunked(
    url: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """POST an endless chunked body; the answer that comes while it is still being sent."""
    parts = urlsplit(url)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTransfer-Encoding: chunked\r\n{head}\r\n"
    ).encode()
    # The server answers 413 and closes with our unread chunks in its buffer, so our side gets a
    # reset while still sending. An asyncio transport drops what it had not yet read when its
    # write fails; a plain socket still hands over the answer that came before the reset. The
    # server runs in this event loop, so the client runs in threads.
    raw = await asyncio.to_thread(_send_chunked, parts.hostname or "", parts.port or 0, request)
    return _parse(raw)


def _send_chunked(host: str, port: int, request: bytes) -> bytes:
    sock = socket.create_connection((host, port), timeout=ANSWER_TIMEOUT)

    def pump() -> None:
        with contextlib.suppress(OSError):  # the reset that ends it, or our own close
            sock.sendall(request)
            for _ in range(CLIENT_SENDS // len(CHUNK)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            sock.sendall(b"0\r\n\r\n")

    sending = threading.Thread(target=pump, daemon=True)
    sending.start()
    received = b""
    try:
        while not _complete(received):
            part = sock.recv(65536)
            if not part:
                break
            received += part
    finally:
        sock.close()
        sending.join(ANSWER_TIMEOUT)
    return received


def _complete(raw: bytes) -> bool:
    head, found, body = raw.partition(b"\r\n\r\n")
    if not found:
        return False
    return len(body) >= int(_parse_head(head)[1].get("content-length", "0"))


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines if line)
    }
    return int(status_line.split()[1]), headers


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, found, body = raw.partition(b"\r\n\r\n")
    assert found, f"no answer before the connection ended: {raw[:200]!r}"
    status, headers = _parse_head(head)
    return status, headers, body[: int(headers["content-length"])]


async def _post_declared(
    url: str, path: str, length: int, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Declare `length` bytes, send ten, and wait for the answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {length}\r\n"
        f"{head}\r\n0123456789".encode()
    )
    await writer.drain()
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            return await _answer(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
def counted() -> Iterator[Counted]:
    yield Counted([])


@pytest.mark.parametrize(
    ("path", "limit", "content_type"),
    [
        ("/twilio/sms", TWILIO_LIMIT, "application/x-www-form-urlencoded"),
        (
            "/twilio/voice/status?pl=pl_x&leg=lead-1",
            TWILIO_LIMIT,
            "application/x-www-form-urlencoded",
        ),
        ("/v1/leads", API_LIMIT, "application/json"),
        ("/console/sign-in", CONSOLE_LIMIT, "application/x-www-form-urlencoded"),
    ],
)
async def test_chunked_body_is_cut_off_at_the_limit(  # noqa: PLR0917
    settings: Settings,
    engine: AsyncEngine,
    issued_key: IssuedKey,
    counted: Counted,
    path: str,
    limit: int,
    content_type: str,
) -> None:
    headers = {
        "Content-Type": content_type,
        "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl",
        "Authorization": f"Bearer {issued_key.secret}",
    }
    async with serve(counting(create_app(settings), counted)) as url:
        status, answer_headers, body = await _post_chunked(url, path, headers)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    # The app was handed the limit and the server's buffer at most, not the 16 MB sent at it.
    [received] = counted.bodies
    assert limit < received <= limit + SERVER_BUFFER
    assert answer_headers.get("connection") == "close"


@pytest.mark.parametrize(
    "path",
    [
        "/twilio/sms",
        "/twilio/voice/amd?pl=pl_x",
        "/v1/leads",
        "/sandbox/_sandbox/numbers",
        "/console/sign-in",
    ],
)
async def test_declared_length_over_the_limit_is_refused_without_reading(
    settings: Settings, engine: AsyncEngine, issued_key: IssuedKey, counted: Counted, path: str
) -> None:
    # Signed-looking and authenticated, so that only the body could stop the route.
    headers = {
        "Content-Type": FORM,
        "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl",
        "Authorization": f"Bearer {issued_key.secret}",
    }
    async with serve(counting(create_app(settings), counted)) as url:
        status, answer_headers, body = await _post_declared(url, path, 300_000_000, headers)
    assert status == 413
    assert json.loads(body)["error"] == {
        "code": "too_large",
        "message": f"body larger than {BodyLimitMiddleware(create_app).limit_for(path)} bytes",
    }
    assert answer_headers.get("connection") == "close"
    assert counted.bodies == [0]  # not a byte of the body was read


def test_limits_by_path() -> None:
    limits = BodyLimitMiddleware(create_app)
    assert limits.limit_for("/twilio/sms") == TWILIO_LIMIT
    assert limits.limit_for("/twilio/voice/conference") == TWILIO_LIMIT
    assert limits.limit_for("/twilio") == TWILIO_LIMIT
    assert limits.limit_for("/twilioX") == API_LIMIT
    assert limits.limit_for("/sandbox/2010-04-01/Accounts/AC1/Messages.json") == SANDBOX_LIMIT
    assert limits.limit_for("/v1/playbooks") == API_LIMIT
    assert limits.limit_for("/console/compliance/check") == CONSOLE_LIMIT


async def test_bodies_within_the_limit_pass(
    settings: Settings, engine: AsyncEngine, issued_key: IssuedKey, counted: Counted
) -> None:
    """A chunked body under the limit reaches the route whole (here: 422 on its content)."""
    parts_sent = json.dumps({"phone": "+14155550123", "name": "x" * 200_000}).encode()
    async with serve(counting(create_app(settings), counted)) as url:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(
            f"POST /v1/leads HTTP/1.1\r\nHost: {parts.netloc}\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: Bearer {issued_key.secret}\r\nContent-Type: application/json\r\n"
            "\r\n".encode()
        )
        for start in range(0, len(parts_sent), len(CHUNK)):
            piece = parts_sent[start : start + len(CHUNK)]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT):
            status, _headers, body = await _answer(reader)
        writer.close()
    assert status == 422, body
    assert counted.bodies == [len(parts_sent)]
