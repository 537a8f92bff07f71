"""`gateway run` for the crash drills: `python -m tests.reliability.run_process` runs
`gateway.cli.main(["run"])` (web app, worker, built-in sandbox in one process) after what a
separate process cannot get from the test:

- the drill's clock (`DRILL_CLOCK_START`/`DRILL_CLOCK_EPOCH`, see `worker_process.py`), for the
  gateway and for the built-in sandbox's stamps, so quiet hours never defer the burst and the
  sender's reconciliation compares Twilio's `date_created` with its own times on one clock;
- in the short form, the worker's compressed timeouts (`worker_process.compress_timeouts`);
- a witness on the sandbox's `Messages.create` answers: `DRILL_CREATES_LOG` gets a line
  "<To> <SID>" for each create answered 201, written before the answer leaves, and with
  `DRILL_KILL_AT_CREATE=N` the process sends itself SIGKILL right after it has answered its
  N-th create: Twilio has the text, the gateway never read its SID.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from gateway import app as gateway_app
from gateway import cli
from gateway.clock import set_clock
from tests.reliability.worker_process import CLOCK_EPOCH, CLOCK_START, COMPRESSED, compress_timeouts
from twilio_sandbox import Sandbox

CREATES_LOG = "DRILL_CREATES_LOG"
KILL_AT_CREATE = "DRILL_KILL_AT_CREATE"


class CreateWitness:
    """ASGI wrapper of the sandbox: notes every answered Messages.create, and may SIGKILL the
    whole process just after the N-th answer was handed to the connection."""

    def __init__(self, app: Any, log: str | None, kill_at: int | None) -> None:
        self.app, self.log, self.kill_at = app, log, kill_at
        self.answered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        creating = (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/Messages.json")
        )
        if not creating:
            await self.app(scope, receive, send)
            return
        status = 0
        body = b""

        async def witnessed(message: Any) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")
                if status == 201 and not message.get("more_body"):
                    self._note(json.loads(body))
            await send(message)
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if last and status == 201 and self.answered == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        await self.app(scope, receive, witnessed)

    def _note(self, created: dict[str, Any]) -> None:
        self.answered += 1
        if self.log is not None:
            # A plain append: written to the OS before the answer leaves, so a SIGKILL after
            # it cannot lose the line.
            with open(self.log, "a", encoding="utf-8") as out:
                out.write(f"{created['to']} {created['sid']}\n")


def main() -> int:
    start = datetime.fromisoformat(os.environ[CLOCK_START])
    epoch = float(os.environ[CLOCK_EPOCH])

    def clock() -> datetime:
        return start + timedelta(seconds=time.time() - epoch)

    set_clock(clock)
    if os.environ.get(COMPRESSED) == "1":
        compress_timeouts()
    kill_at = int(os.environ[KILL_AT_CREATE]) if os.environ.get(KILL_AT_CREATE) else None
    log = os.environ.get(CREATES_LOG)

    class DrillSandbox(Sandbox):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, start=clock(), **kwargs)
            self.clock.now = clock  # type: ignore[method-assign]
            self.app = CreateWitness(self.app, log, kill_at)  # type: ignore[assignment]

    # create_app builds its sandbox from this module global: the drill's one takes its place.
    gateway_app.Sandbox = DrillSandbox  # type: ignore[attr-defined]
    return cli.main(["run"])


if __name__ == "__main__":
    sys.exit(main())
