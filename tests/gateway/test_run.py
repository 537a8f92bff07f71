"""`gateway run` in a subprocess on the embedded defaults answers /healthz, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.ports import free_port

START_LIMIT = 60.0  # generous: a busy CI machine starts slowly; only a broken start waits it out


def test_gateway_run_serves_healthz_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORT=str(port), DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = time.monotonic()
    status = None
    try:
        while time.monotonic() - started < START_LIMIT and process.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                status = response.status_code
                if status == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 200, (
            f"gateway run did not answer /healthz with 200 within {START_LIMIT:.0f} s"
        )
        assert response.json()["checks"] == {"database": "ok", "redis": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught, as a server should.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"gateway listening on http://127.0.0.1:{port}" in output
    assert "embedded redis stopped" in output
    assert (tmp_path / "data" / "gateway.db").exists()
    assert not (tmp_path / "data" / "redis.sock").exists()


def test_gateway_run_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    """The port is bound before anything is printed or started: "listening" is never said of a
    port another process holds, and the error is one line, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(PORT=str(port), DATA_DIR=str(tmp_path / "data"))
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "run"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another gateway? set PORT)"
    ]
    assert not (tmp_path / "data").exists()  # nothing was started: no database, no Redis
