"""The Twilio sandbox in a process of its own, for benchmarks that must not count its work as
the gateway's (inside `gateway web` its REST answers, callbacks and record share the web
process's CPU and memory):

    .venv/bin/python -m bench.sandbox_server PORT

Realtime clock, the credentials of `AUTH` (the gateway gets them as its TWILIO_ACCOUNT_SID and
TWILIO_AUTH_TOKEN, with TWILIO_API_URL pointing here), everything in memory.
"""

from __future__ import annotations

import sys

import httpx
import uvicorn

from twilio_sandbox import Sandbox
from voice.links import INBOUND_PATH

AUTH = ("AC" + "b3" * 16, "bench-sandbox-token")


def serve(port: int) -> None:
    uvicorn.run(
        Sandbox(*AUTH, realtime=True).app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


async def register_number(sandbox_url: str, number: str, gateway_url: str) -> None:
    """Give the sandbox's Twilio account `number`, its webhooks the gateway's at `gateway_url`
    (the built-in sandbox registers the account's numbers when `gateway web` starts)."""
    async with httpx.AsyncClient(base_url=sandbox_url, auth=AUTH) as client:
        answer = await client.post(
            "/_sandbox/numbers",
            json={
                "number": number,
                "sms_url": f"{gateway_url}/twilio/sms",
                "voice_url": f"{gateway_url}{INBOUND_PATH}",
            },
        )
        answer.raise_for_status()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
