"""Real HTTP servers for tests: serve any ASGI app with uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0


def _bound_socket(host: str) -> socket.socket:
    # Binding here (port 0) and handing the socket to uvicorn avoids the race of
    # "find a free port, close it, hope nobody takes it".
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


class QuickStopServer(uvicorn.Server):
    """uvicorn's server that stops as soon as it is asked: uvicorn's own loop looks at
    `should_exit` every 0.1 s, which a suite that starts and stops a server or two in each of
    a thousand tests pays for in minutes."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._asked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        # uvicorn's loop (its tick keeps the Date header and the exit checks), woken early.
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's shutdown in the same steps, polling where it pauses a fixed 0.1 s: close
        # the listeners, ask each connection to close, wait (bounded) for connections and
        # requests to end, then run the app's lifespan shutdown.
        for listener in self.servers:
            listener.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                # uvicorn's state offers no event to wait on for either.
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                for listener in self.servers:
                    await listener.wait_closed()
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel()
        if not self.force_exit:
            await self.lifespan.shutdown()

    def stop(self) -> None:
        """Ask the server to stop, from its own loop or another thread."""
        self.should_exit = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._asked.set)


def _server(app: Any, host: str, port: int) -> QuickStopServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="auto",
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    return QuickStopServer(config)


@contextlib.asynccontextmanager
async def serve(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run `app` under uvicorn in the current event loop; yield its base URL."""
    sock = _bound_socket(host)
    port = sock.getsockname()[1]
    server = _server(app, host, port)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while not server.started:
                if task.done():
                    task.result()  # surfaces the startup error
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.005)
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await task
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` under uvicorn in a thread with its own loop (for sync tests)."""
    sock = _bound_socket(host)
    port = sock.getsockname()[1]
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(int(START_TIMEOUT_SECONDS / 0.005)):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.005)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        thread.join(STOP_TIMEOUT_SECONDS)
        sock.close()
