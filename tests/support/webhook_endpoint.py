"""A customer's webhook endpoint for tests: a real HTTP server (Starlette under uvicorn on
127.0.0.1, in a thread so a TestClient, the worker and the stack can all reach it) that records
every request, answers what the test says, and can be stopped and started again on its port."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.ports import free_port
from tests.support.servers import QuickStopServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


Answer = Callable[[Received], "tuple[int, dict[str, str]] | int"]


@dataclass
class WebhookEndpoint:
    """A customer's webhook endpoint: records every request; answers what `answer` says."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Answer = lambda _r: 200
    delays: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    # path -> an event the answer waits for (bounded by `hold_limit` seconds): a request the
    # test holds open for as long as it needs, not for a guessed time.
    holds: dict[str, threading.Event] = field(default_factory=dict)
    hold_limit: float = 60.0
    holds_run_out: int = 0  # holds answered because `hold_limit` passed, not by the test
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        got = Received(
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
            time.monotonic(),
        )
        with self.lock:
            self.received.append(got)
        delay = self.delays.get(got.path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        hold = self.holds.get(got.path)
        if hold is not None and not await asyncio.to_thread(hold.wait, self.hold_limit):
            with self.lock:
                self.holds_run_out += 1
        answered = self.answer(got)
        status, headers = answered if isinstance(answered, tuple) else (answered, {})
        return Response(f"answer {status}", status_code=status, headers=headers)

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r.json for r in self.received if path is None or r.path == path]


class WebhookEndpointServer:
    """uvicorn on a fixed 127.0.0.1 port that can be stopped and started again ("down, then
    back"): requests while it is down get connection refused, as from a crashed server."""

    def __init__(self, receiver: WebhookEndpoint) -> None:
        self.receiver = receiver
        self.port = free_port()
        self.app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
        self._server: QuickStopServer | None = None
        self._thread: threading.Thread | None = None
        receiver.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        server = QuickStopServer(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.started, "receiver did not start"
        self._server, self._thread, self._sock = server, thread, sock

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.stop()
        self._thread.join(5)
        self._sock.close()
        self._server = self._thread = None
