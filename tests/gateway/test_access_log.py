"""`gateway run` at INFO logs each request's path in the access log, never its query string
(phone numbers, keys), and the RedactQuery filter on its own."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.logs import RedactQuery
from tests.support.ports import free_port

READY_WAIT = 60.0  # generous: a busy machine may be slow to start; nothing is timed here
PHONE = "%2B18085550123"
KEY = "k3y-5ecr3t-value"


def test_access_log_of_gateway_run_shows_no_query(tmp_path: Path) -> None:
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
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WAIT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        query = f"?phone={PHONE}&key={KEY}"
        assert httpx.get(f"{base}/v1/leads{query}", timeout=10).status_code == 401
        assert httpx.get(f"{base}/healthz{query}", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert '"GET /v1/leads?… HTTP/1.1" 401' in output, output
    assert '"GET /healthz?… HTTP/1.1" 200' in output
    assert KEY not in output and "8085550123" not in output


def test_redact_query_keeps_the_path() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/v1/leads?phone={PHONE}&key={KEY}", "1.1", 401),
        None,
    )
    assert RedactQuery().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /v1/leads?… HTTP/1.1" 401'
