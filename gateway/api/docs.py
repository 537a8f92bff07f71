"""`GET /docs`: the API reference, `/openapi.json` rendered in the browser by Redoc; and `GET /`,
the page that leads a person to the console and the docs.

Redoc is vendored in `static/` (see its README) and served under `/docs/static`, never from a
CDN: a deployment may have no internet. The pages carry no inline script, so their
Content-Security-Policy can refuse every script that is not ours.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_PATH = "/docs/static"

# What Redoc needs beyond 'self', each found by loading the page under a stricter policy:
# styled-components injects <style> elements ('unsafe-inline' styles), the search index runs in
# a worker built from a blob: URL, and icons are data: images. Scripts stay 'self' only.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
HOME_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Partyline gateway API reference</title>
</head>
<body style="margin:0">
<noscript>This page needs JavaScript. The API description itself is at
<a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</noscript>
<div id="redoc"></div>
<script src="{STATIC_PATH}/redoc.standalone.js"></script>
<script src="{STATIC_PATH}/docs.js"></script>
</body>
</html>
"""

HOME_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Partyline gateway</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}
li{margin:.4rem 0}
</style>
</head>
<body>
<h1>Partyline gateway</h1>
<ul>
<li><a id="console" href="/console/">Console</a>: sign in to manage leads, numbers, playbooks
and reps.</li>
<li><a id="docs" href="/docs">API reference</a>: the REST API under <code>/v1</code>; its
OpenAPI 3.1 document is at <a href="/openapi.json">/openapi.json</a>.</li>
</ul>
<p>Installing, configuring and running the gateway: see <code>README.md</code> at the top of its
source repository.</p>
</body>
</html>
"""

# What `GET /` answers a client that asks for JSON instead of a page.
HOME_JSON = {"console": "/console/", "docs": "/docs", "openapi": "/openapi.json"}


async def docs_page(_request: Request) -> HTMLResponse:
    return HTMLResponse(DOCS_PAGE, headers={"Content-Security-Policy": DOCS_CSP})


def _wants_json(request: Request) -> bool:
    """True when the client asks for JSON and not for HTML (an API client, not a browser)."""
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


async def home_page(request: Request) -> Response:
    if _wants_json(request):
        return JSONResponse(HOME_JSON)
    return HTMLResponse(HOME_PAGE, headers={"Content-Security-Policy": HOME_CSP})


routes: list[BaseRoute] = [
    Route("/", home_page, methods=["GET"]),
    Route("/docs", docs_page, methods=["GET"]),
    Mount(STATIC_PATH, app=StaticFiles(packages=[("gateway.api", "static")]), name="docs_static"),
]
