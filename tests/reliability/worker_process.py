"""The drills' worker: the real `gateway worker` in its own process, and the handle that starts
it, kills it with SIGKILL and starts it again.

`python -m tests.reliability.worker_process` runs `gateway.cli.main(["worker"])` after two
things a separate process cannot get from the test: the drill's clock (a wall clock shifted to a
known instant, the same one the web app and the sandbox use, so quiet hours never defer the
burst whatever the hour of the CI run) and, in the short form, compressed timeouts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from gateway import cli, worker
from gateway.clock import set_clock
from gateway.jobs import sms_send
from gateway.sms import sender
from gateway.webhooks import concurrency, delivery

REPO = Path(__file__).resolve().parents[2]
CLOCK_START = "DRILL_CLOCK_START"  # ISO instant the drill's clock showed at CLOCK_EPOCH
CLOCK_EPOCH = "DRILL_CLOCK_EPOCH"  # time.time() at that instant
COMPRESSED = "DRILL_COMPRESSED_TIMEOUTS"  # "1": the short form's timeouts (see below)
STOP_TIMEOUT = 10.0


def compress_timeouts() -> None:
    """Shorter versions of the worker's production timeouts, same relations between them.

    After a SIGKILL arq leaves the killed job's in-progress lock until it expires (the job
    timeout + 10 s), the sender reconciles a `sending` row only after IN_FLIGHT_GRACE, and a
    webhook delivery claimed by the killed worker goes again when its lease ends: with
    production values every kill costs over a minute, too long for CI. The recovery code that
    runs is the same; only the waits are shorter. The full form keeps production values.
    """
    worker.TWILIO_TIMEOUT = 3.0
    worker.JOB_TIMEOUT = 6  # arq's in-progress lock: 16 s
    sender.IN_FLIGHT_GRACE = timedelta(seconds=5)  # > Twilio timeout + margin, as in production
    sms_send.STALE_SENDING = timedelta(seconds=10)  # > the grace, as in production
    # A killed worker's webhook claims and slots run out as soon (one lease for both), and a
    # run hands on well inside the job timeout, as in production.
    concurrency.LEASE_SECONDS = 5.0
    delivery.RUN_SECONDS = 2.0


def main() -> int:
    # A warm spare: everything is imported, the worker starts when the drill says "go" (the
    # moment it plays the process manager restarting a killed worker). EOF: not needed.
    if not sys.stdin.readline():
        return 0
    start = datetime.fromisoformat(os.environ[CLOCK_START])
    epoch = float(os.environ[CLOCK_EPOCH])
    set_clock(lambda: start + timedelta(seconds=time.time() - epoch))
    if os.environ.get(COMPRESSED) == "1":
        compress_timeouts()
    return cli.main(["worker"])


class WorkerProcess:
    """One `gateway worker` at a time: start, SIGKILL, start again; every run logs to `log`.

    A spare process, its imports done, stands by: Python's start-up (seconds on a loaded CI
    machine) would otherwise stretch every restart, and the drill is about what the worker
    does once it runs, not about how fast Python imports.
    """

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._spare: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.worker_process"],
                cwd=self.log.parent,  # no stray .env from the work tree
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def prepare(self) -> None:
        """Have the next worker process imported and waiting."""
        if self._spare is None or self._spare.poll() is not None:
            self._spare = self._spawn()

    def start(self) -> None:
        assert not self.alive(), "a worker is already running"
        self.prepare()
        process, self._spare = self._spare, None
        assert process is not None and process.stdin is not None
        self.starts += 1
        self._note(f"worker start {self.starts} (pid {process.pid})")
        process.stdin.write(b"go\n")
        process.stdin.close()
        self.process = process
        self.prepare()

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, jobs die wherever they are."""
        assert self.process is not None and self.alive(), "no running worker to kill"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.kills += 1
        self._note("SIGKILL")

    def stop(self) -> None:
        """End the drill's worker politely (SIGTERM), then for good; dismiss the spare."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.stdin is not None:
            spare.stdin.close()  # EOF: it exits without starting
        process, self.process = self.process, None
        for each in (process, spare):
            if each is None or each.poll() is not None:
                continue
            if each is process:
                each.send_signal(signal.SIGTERM)
            try:
                each.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                each.kill()
                each.wait()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _note(self, event: str) -> None:
        with self.log.open("ab") as out:
            out.write(f"=== {time.strftime('%H:%M:%S')} {event} ===\n".encode())

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no worker log)"


if __name__ == "__main__":
    sys.exit(main())
