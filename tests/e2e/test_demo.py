"""`gateway demo party-line` against a real `gateway run`: both are subprocesses on 127.0.0.1,
the gateway on its embedded defaults (SQLite and Redis in a temp DATA_DIR, the built-in Twilio
sandbox, no Twilio credentials). What the demo prints and the party line's record must agree;
without a gateway, or with one that talks to Twilio, the demo refuses in one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.slow  # two subprocesses and a whole party line: run by .ci/run

START_LIMIT = 30.0  # seconds for `gateway run` to answer /healthz
DEMO_LIMIT = 240.0  # the demo subprocess is killed after this (its own --timeout is shorter)
STOP_LIMIT = 40.0
ISOLATED = (
    "DATABASE_URL",
    "REDIS_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_URL",
    "PUBLIC_BASE_URL",
    "PORT",
)
ACTIVITY = re.compile(r"^\s+\+\s*[\d.]+s\s+(event|outcome)\s+(\w+)")
SUMMARY = re.compile(
    r"^party line (pl_\w+) ended \((\w+)\): outcome (\w+), rep connected (.+), ([\d.]+) s$"
)
KEY = re.compile(r"Authorization: Bearer (\S+)'")


def _env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    env.update(PORT=str(port), DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO", **extra)
    return env


@contextmanager
def gateway_run(tmp_path: Path, **extra: str) -> Iterator[tuple[str, dict[str, str], Path]]:
    """`gateway run` in a subprocess; yields its URL, its environment and its log file."""
    port = free_port()
    env = _env(tmp_path, port, **extra)
    log = tmp_path / "gateway.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as sink:
        # A file, not a pipe: nobody reads while it runs, and a full pipe would block the server.
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run"],
            env=env,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            started, status = time.monotonic(), None
            while time.monotonic() - started < START_LIMIT and process.poll() is None:
                try:
                    status = httpx.get(f"{url}/healthz", timeout=1).status_code
                    if status == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            assert status == 200, f"gateway run did not come up:\n{log.read_text()[-3000:]}"
            yield url, env, log
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_LIMIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_LIMIT)


def gateway(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEMO_LIMIT,
        check=False,
    )


def test_demo_tells_a_party_line_where_the_second_rep_connects(tmp_path: Path) -> None:
    with gateway_run(tmp_path) as (url, env, log):
        done = gateway(
            env,
            tmp_path,
            *("demo", "party-line", "--url", url, "--reps", "2", "--first-rep", "no-answer"),
            *("--rep-timeout", "5", "--talk", "1", "--timeout", "150"),
        )
        told = (
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\ngateway:\n{log.read_text()[-3000:]}"
        )
        assert done.returncode == 0, told
        lines = done.stdout.splitlines()
        # The party line's own activities (the play may record others, e.g. `started`).
        activities = [
            m.group(2) for m in map(ACTIVITY.match, lines) if m and "party_line" in m.group(2)
        ]
        assert activities == [
            "party_line_lead_attempted",
            "party_line_lead_answered",
            "party_line_rep_attempted",
            "party_line_rep_attempted",
            "party_line_completed",
        ], told
        [summary] = [m for m in map(SUMMARY.match, lines) if m]
        party_line_id, end_reason, outcome, rep = summary.group(1, 2, 3, 4)
        assert (end_reason, outcome, rep) == ("completed", "party_line_completed", "Sam (rep 2)")
        assert float(summary.group(5)) > 0
        assert any(re.search(r"leg rep-1 .*result no-answer", line) for line in lines), told
        # One poll may see the key press and the conference join together, or one after the other.
        assert any(re.search(r"leg rep-2 .*pressed 1", line) for line in lines), told
        assert any(re.search(r"leg rep-2 .*result connected", line) for line in lines), told
        [key] = [m.group(1) for m in map(KEY.search, lines) if m]

        headers = {"Authorization": f"Bearer {key}"}
        shown = httpx.get(f"{url}/v1/party-lines/{party_line_id}", headers=headers, timeout=10)
        assert shown.status_code == 200, shown.text
        record = shown.json()
        reps = httpx.get(f"{url}/v1/reps", headers=headers, timeout=10).json()["data"]
        rep_ids = {r["name"]: r["id"] for r in reps}
        assert (record["state"], record["end_reason"]) == ("ended", "completed")
        assert record["connected_rep_id"] == rep_ids["Sam (rep 2)"]
        legs = {leg["leg"]: leg for leg in record["legs"]}
        assert list(legs) == ["lead-1", "rep-1", "rep-2"]
        assert (legs["lead-1"]["answered_by"], legs["lead-1"]["status"]) == ("human", "completed")
        assert (legs["rep-1"]["rep_id"], legs["rep-1"]["result"]) == (
            rep_ids["Rita (rep 1)"],
            "no-answer",
        )
        assert legs["rep-2"]["result"] == "connected" and legs["rep-2"]["accepted_at"]
        # The demo stopped its waiting play and retired its reps.
        assert not any(r["available"] for r in reps)


def test_demo_refuses_when_no_gateway_answers(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = gateway(
        _env(tmp_path, port), tmp_path, "demo", "party-line", "--url", f"http://127.0.0.1:{port}"
    )
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: no gateway answers at http://127.0.0.1:{port}"), line
    assert not (tmp_path / "data").exists()  # refused before touching any database


def test_demo_refuses_a_gateway_that_talks_to_twilio(tmp_path: Path) -> None:
    live = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "f" * 32}
    with gateway_run(tmp_path, **live) as (url, env, _log):
        done = gateway(env, tmp_path, "demo", "party-line", "--url", url)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout == ""
        [line] = done.stderr.strip().splitlines()
        assert line == (
            f"error: the gateway at {url} is not in sandbox mode (it has Twilio credentials); "
            "the demo only runs against the built-in sandbox"
        )
        listed = gateway(env, tmp_path, "accounts", "list")
        assert (listed.returncode, listed.stdout) == (0, "")  # no demo account was made
