"""`GET /docs`: the API reference as one self-contained HTML page (no scripts, no CDN), rendered
from the same OpenAPI document as `/openapi.json`."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from .openapi import document_for

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ddd;margin-top:2.5rem}
.op{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.method{font:bold 13px monospace;padding:2px 6px;border-radius:4px;color:#fff;background:#555}
.get{background:#2a7}.post{background:#27c}.put{background:#a6c}.patch{background:#c82}
.delete{background:#c33}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f6f6f6;padding:.5rem;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
"""


def _ref(schema: dict[str, Any]) -> str:
    """A link to a component schema, or the inline schema as JSON."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    return f"<code>{escape(json.dumps(schema))}</code>"


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        '<div class="op">',
        f'<p><span class="method {method}">{method.upper()}</span> <code>{escape(path)}</code>'
        f" &mdash; {escape(op.get('summary', ''))}</p>",
    ]
    if op.get("description"):
        parts.append(f"<p>{escape(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>"
        )
        for param in params:
            parts.append(
                f"<tr><td><code>{escape(param['name'])}</code></td><td>{escape(param['in'])}</td>"
                f"<td>{'yes' if param.get('required') else 'no'}</td>"
                f"<td>{_ref(param['schema'])}</td></tr>"
            )
        parts.append("</table>")
    body = op.get("requestBody")
    if body:
        kinds = ", ".join(
            f"<code>{escape(media)}</code>: {_ref(content['schema'])}"
            for media, content in body["content"].items()
        )
        parts.append(f"<p>Body: {kinds}</p>")
    parts.append("<ul>")
    for status, response in op["responses"].items():
        content = response.get("content", {})
        shapes = ", ".join(_ref(c["schema"]) for c in content.values())
        parts.append(
            f"<li><b>{escape(status)}</b> {escape(response['description'])}"
            + (f" &rarr; {shapes}" if shapes else "")
            + "</li>"
        )
    parts.append("</ul></div>")
    return "\n".join(parts)


def render(document: dict[str, Any]) -> str:
    """The HTML page for an OpenAPI document: operations by tag, then the schemas."""
    by_tag: dict[str, list[str]] = {}
    for path, item in document["paths"].items():
        for method, op in item.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation(path, method, op))
    info = document["info"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{escape(info['title'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>',
        "<p>" + " · ".join(f'<a href="#tag-{escape(t)}">{escape(t)}</a>' for t in by_tag) + "</p>",
    ]
    for tag, operations in by_tag.items():
        parts.append(f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>')
        parts.extend(operations)
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(
            f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>'
            f"<pre>{escape(json.dumps(schema, indent=2, ensure_ascii=False))}</pre>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


async def docs_page(request: Request) -> HTMLResponse:
    return HTMLResponse(render(document_for(request)))


routes = [Route("/docs", docs_page, methods=["GET"])]
