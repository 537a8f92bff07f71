"""A customer's webhook endpoint in a process of its own, for the volume test: run in the test's
process, the receiver's thread and the worker's event loop take turns on one GIL, and the test
would measure that instead of the gateway.

    python -m tests.webhooks.receiver_process --port 8123 --fail-first-of-every 10

POST /<anything>: recorded; answers 500 to the first try of every event whose id hashes to 0
modulo N (crc32), 200 otherwise. GET /received: what was recorded, in arrival order.
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections import Counter
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def fails_first_try(event_id: str, every: int) -> bool:
    return every > 0 and zlib.crc32(event_id.encode()) % every == 0


def build(every: int) -> Starlette:
    received: list[dict[str, Any]] = []
    seen: Counter[str] = Counter()

    async def hook(request: Request) -> Response:
        body = json.loads(await request.body())
        event_id = str(body["id"])
        seen[event_id] += 1
        received.append(
            {
                "id": event_id,
                "event_id_header": request.headers.get("gateway-event-id"),
                "play_id": body.get("activity_play_id"),
                "note": body.get("activity_note"),
            }
        )
        failing = seen[event_id] == 1 and fails_first_try(event_id, every)
        return Response("no" if failing else "ok", status_code=500 if failing else 200)

    async def listing(_request: Request) -> Response:
        return JSONResponse(received)

    return Starlette(
        routes=[
            Route("/received", listing, methods=["GET"]),
            Route("/{path:path}", hook, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fail-first-of-every", type=int, default=0)
    args = parser.parse_args()
    uvicorn.run(
        build(args.fail_first_of_every),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
