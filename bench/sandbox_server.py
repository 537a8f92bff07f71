"""The Twilio sandbox in a process of its own, for benchmarks that must not count its work as
the gateway's (inside `gateway web` its REST answers, callbacks and record share the web
process's CPU and memory):

    .venv/bin/python -m bench.sandbox_server PORT

Realtime clock, the credentials of `AUTH` (the gateway gets them as its TWILIO_ACCOUNT_SID and
TWILIO_AUTH_TOKEN, with TWILIO_API_URL pointing here), everything in memory.
"""

from __future__ import annotations

import sys

import uvicorn

from twilio_sandbox import Sandbox

AUTH = ("AC" + "b3" * 16, "bench-sandbox-token")


def serve(port: int) -> None:
    uvicorn.run(
        Sandbox(*AUTH, realtime=True).app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    serve(int(sys.argv[1]))
