"""Bare Starlette apps the benchmarks compare against, served like `gateway web` serves ours.

    python -m bench.bare twiml --port 8001     # POST /twilio/sms[/status] -> <Response/>
    python -m bench.bare receiver --port 8002  # a webhook receiver that counts what arrives

Same uvicorn settings as `gateway web` (`gateway.cli._serve`): one process, lifespan on,
proxy headers, the log level of the run, uvicorn's default loop and HTTP parser.
"""

from __future__ import annotations

import argparse
import os
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def twiml(request: Request) -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


def twiml_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/twilio/sms", twiml, methods=["POST"]),
            Route("/twilio/sms/status", twiml, methods=["POST"]),
            Route("/healthz", lambda r: Response("ok"), methods=["GET"]),
        ]
    )


def receiver_app() -> Starlette:
    """Answers every webhook 200 at once and remembers when each event id first arrived."""
    arrived: dict[str, float] = {}
    posts = [0]

    async def hook(request: Request) -> Response:
        await request.body()
        posts[0] += 1
        event_id = request.headers.get("gateway-event-id", "")
        arrived.setdefault(event_id, time.time())
        return Response(status_code=200)

    async def stats(request: Request) -> JSONResponse:
        times = sorted(arrived.values())
        return JSONResponse(
            {
                "posts": posts[0],
                "distinct": len(arrived),
                "first": times[0] if times else None,
                "last": times[-1] if times else None,
                "times": times if request.query_params.get("times") else [],
            }
        )

    async def reset(request: Request) -> Response:
        arrived.clear()
        posts[0] = 0
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/hook", hook, methods=["POST"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/reset", reset, methods=["POST"]),
            Route("/healthz", lambda r: Response("ok"), methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["twiml", "receiver"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = twiml_app() if args.app == "twiml" else receiver_app()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level=os.environ.get("LOG_LEVEL", "WARNING").lower(),
        lifespan="on",
        proxy_headers=True,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
