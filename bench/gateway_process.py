"""`gateway run` as a user starts it, for the scripts that drive a whole gateway from outside
(`bench/console_live.py`, `docs/screenshots.py`): a subprocess on the embedded defaults in a
working directory, on a free port of 127.0.0.1, its CLI beside it, stopped by its PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

START_LIMIT = 60.0  # s for `gateway run` to answer /healthz on a busy machine
WAIT_LIMIT = 60.0  # s for the worker to send a text or record a reply
STOP_LIMIT = 30.0
# The gateway's settings that must not leak in from this shell: it runs on its defaults.
ISOLATED = (
    "DATABASE_URL",
    "REDIS_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_URL",
    "PUBLIC_BASE_URL",
    "PORT",
    "SMTP_URL",
    "ENVIRONMENT",
    "DATA_DIR",
    "LOG_LEVEL",
)
# One area code per US time zone: the gate texts a lead only 08:00-20:00 in her zone, so a
# script asks it which of these it may text now.
AREA_CODES = ("808", "907", "415", "303", "312", "617")
# What `gateway accounts create` prints.
KEY_LINE = re.compile(r"^api key (\S+)$", re.MULTILINE)
ACCOUNT_LINE = re.compile(r"^account (\S+) ", re.MULTILINE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], bool], limit: float = WAIT_LIMIT) -> None:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.3)


@dataclass
class Gateway:
    url: str
    env: dict[str, str]
    cwd: Path
    pid: int
    log_path: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A `gateway` command against the same DATA_DIR, as its user would type it."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"gateway {' '.join(args)}: {done.stdout}{done.stderr}")
        return done


@contextmanager
def gateway_run(workdir: Path, log_level: str = "WARNING") -> Iterator[Gateway]:
    """`gateway run` in a subprocess on a free port, its output in `workdir/gateway.log`;
    stopped by its PID on the way out (SIGTERM, then SIGKILL)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    env.update(PORT=str(port), DATA_DIR=str(workdir / "data"), LOG_LEVEL=log_level)
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / "gateway.log"
    with log_path.open("w") as sink:
        # A file, not a pipe: nobody reads it while the server runs, and a full pipe would block.
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"gateway run exited:\n{log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until("gateway run to answer /healthz", healthy, START_LIMIT)
        yield Gateway(url, env, workdir, process.pid, log_path)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_LIMIT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_LIMIT)


class Api:
    """The public API with the account's key; any answer but the expected one stops the script."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        answer = self.client.request(method, path, **kwargs)
        if answer.status_code != expect:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()


def create_account(gateway: Gateway, name: str) -> tuple[str, str]:
    """`gateway accounts create NAME`, as the Quickstart says: its first API key and its id."""
    created = gateway.cli("accounts", "create", name).stdout
    key_match, account_match = KEY_LINE.search(created), ACCOUNT_LINE.search(created)
    if key_match is None or account_match is None:
        raise RuntimeError(f"gateway accounts create printed no key or account:\n{created}")
    return key_match.group(1), account_match.group(1)


def pick_area_code(gateway: Gateway, account_id: str) -> str:
    """The first area code whose leads the gate lets the account text now (quiet hours)."""
    for area in AREA_CODES:
        phone = f"+1{area}5550123"
        done = gateway.cli("compliance", "check", phone, "--account", account_id, check=False)
        if done.returncode == 0:
            return area
    raise RuntimeError("quiet hours everywhere in AREA_CODES: run the script at another time")
