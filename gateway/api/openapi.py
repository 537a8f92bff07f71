"""The OpenAPI 3.1 document at `GET /openapi.json`, built from the routing table and the
pydantic models that validate requests and shape responses.

How to document an endpoint: decorate it with `@operation(...)`. Method and path come from the
`Route` that serves it (the routing table stays the one source of truth), everything else from
the decorator:

    @operation(
        "Start a play",
        tags=["plays"],
        request=PlayCreate,        # JSON body model (validation mode)
        query=None,                # query-string model: one parameter per field
        response=PlayPublic,       # response model (serialization mode); None: no body
        status=201,                # success status
        errors={409: "a play of this playbook is already running for the lead"},
        example={"playbook_id": "quote-drip", "lead": {"phone": "+14155550101"}},
    )
    async def create_play(request: Request) -> JSONResponse: ...

401 and 403 `scope_forbidden` (every `/v1` route), 404 (routes with path parameters),
400/413/422 (routes with a body) and 422 (routes with a query model) are added automatically,
all with the `ErrorBody` shape.
`tests/api/test_openapi.py` fails for any `/v1` route without an operation.

Models are named as in the design's `XBase -> XCreate/XUpdate -> X -> XPublic` family, and
their names are the document's component names: `XCreate` (a POST or PUT body, an action's too:
`ResumeCreate`, `SourceCloneCreate`), `XUpdate` (a PATCH body), `XQuery` (a query string),
`XPublic` (one object as returned: the route builds it from the row and answers its
`model_dump(mode="json")`), and `XList` or `XPage` (a page of them). Answers that combine
objects or report an action are named for what they hold (`LeadStarted`, `ReplayResult`); every
error is an `ErrorBody`.

Every operation with a body gives an `example` of it (and `text_example` for a plain-text body):
`/docs` shows them, and `tests/api/test_openapi.py` fails for a body without one, or with one
its own schema or model refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from gateway.errors import error_body

E = TypeVar("E", bound=Callable[..., Any])
JsonMode = Literal["validation", "serialization"]

API_PREFIX = "/v1/"
SCHEMA_REF = "#/components/schemas/{model}"


class IssuePublic(BaseModel):
    """One problem in a playbook document: where, a stable code, and what is wrong."""

    field: str
    code: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    issues: list[IssuePublic] | None = None  # playbook validation errors (PUT /v1/playbooks/{id})
    existing_id: str | None = None  # 409: the id of the row the request collides with


class ErrorBody(BaseModel):
    """The shape of every 4xx/5xx response."""

    error: ErrorDetail


def error_with(
    status: int, code: str, message: str, field: str | None = None, **extra: object
) -> JSONResponse:
    """An error response carrying more than code/message/field (issues, existing_id)."""
    body = error_body(code, message, field)
    error = body["error"]
    assert isinstance(error, dict)
    error.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(body, status_code=status)


@dataclass(frozen=True)
class Operation:
    """What OpenAPI says about one endpoint, besides its method and path."""

    summary: str
    tags: tuple[str, ...]
    description: str | None = None
    request: type[BaseModel] | None = None
    request_text: tuple[str, ...] = ()  # media types whose body is plain text (e.g. YAML)
    example: Mapping[str, Any] | None = None  # a valid JSON body, shown by /docs
    text_example: str | None = None  # a valid plain-text body (request_text), shown by /docs
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_media: tuple[str, ...] = ()  # non-JSON success bodies (e.g. text/csv)
    status: int = 200
    errors: Mapping[int, str] = field(default_factory=dict)
    extra_statuses: Mapping[int, str] = field(default_factory=dict)  # other successes, same body


_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def operation(
    summary: str,
    *,
    tags: Iterable[str],
    description: str | None = None,
    request: type[BaseModel] | None = None,
    request_text: Iterable[str] = (),
    example: Mapping[str, Any] | None = None,
    text_example: str | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    response_media: Iterable[str] = (),
    status: int = 200,
    errors: Mapping[int, str] | None = None,
    extra_statuses: Mapping[int, str] | None = None,
) -> Callable[[E], E]:
    """Register the OpenAPI description of an endpoint; returns the endpoint unchanged."""
    described = Operation(
        summary=summary,
        tags=tuple(tags),
        description=description,
        request=request,
        request_text=tuple(request_text),
        example=example,
        text_example=text_example,
        query=query,
        response=response,
        response_media=tuple(response_media),
        status=status,
        errors=dict(errors or {}),
        extra_statuses=dict(extra_statuses or {}),
    )

    def register(endpoint: E) -> E:
        _OPERATIONS[endpoint] = described
        return endpoint

    return register


def described(endpoint: Callable[..., Any]) -> Operation | None:
    """The operation registered for an endpoint, if any."""
    return _OPERATIONS.get(endpoint)


def api_routes(routes: Iterable[BaseRoute]) -> list[tuple[str, Route]]:
    """(method, route) for every `/v1` route, HEAD left out (Starlette adds it to GET)."""
    found: list[tuple[str, Route]] = []
    for route in routes:
        if isinstance(route, Route) and route.path.startswith(API_PREFIX):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    found.append((method, route))
    return found


def _schemas(ops: Iterable[Operation]) -> tuple[dict[Any, Any], Any]:
    wanted: dict[tuple[type[BaseModel], JsonMode], None] = {(ErrorBody, "serialization"): None}
    for op in ops:
        if op.request is not None:
            wanted[(op.request, "validation")] = None
        if op.query is not None:
            wanted[(op.query, "validation")] = None
        if op.response is not None:
            wanted[(op.response, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=SCHEMA_REF)
    return dict(refs), top.get("$defs", {})


def _ref_name(ref: Mapping[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[-1]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model="ErrorBody")}}},
    }


def _path_item(
    method: str,
    route: Route,
    op: Operation | None,
    refs: Mapping[Any, Any],
    defs: Mapping[str, Any],
) -> dict[str, Any]:
    name = getattr(route.endpoint, "__name__", "operation")
    params: list[dict[str, Any]] = [
        {"name": param, "in": "path", "required": True, "schema": {"type": "string"}}
        for param in route.param_convertors
    ]
    responses: dict[str, Any] = {
        "401": _error("missing, invalid or revoked API key"),
        "403": _error("the API key's scope does not allow this call (`scope_forbidden`)"),
    }
    item: dict[str, Any] = {"operationId": name, "responses": responses}
    if op is None:
        item["summary"] = f"{method} {route.path} (undocumented)"
        return item
    item["summary"], item["tags"] = op.summary, list(op.tags)
    if op.description:
        item["description"] = op.description
    if op.query is not None:
        schema = defs[_ref_name(refs[(op.query, "validation")])]
        required = set(schema.get("required", ()))
        for key, prop in schema.get("properties", {}).items():
            param = {"name": key, "in": "query", "required": key in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
        responses["422"] = _error("a query parameter is invalid (`field` names it)")
    if params:
        item["parameters"] = params
    if op.request is not None or op.request_text:
        content: dict[str, Any] = {}
        if op.request is not None:
            content["application/json"] = {"schema": refs[(op.request, "validation")]}
            if op.example is not None:
                content["application/json"]["example"] = dict(op.example)
        for media in op.request_text:
            content[media] = {"schema": {"type": "string"}}
            if op.text_example is not None:
                content[media]["example"] = op.text_example
        item["requestBody"] = {"required": True, "content": content}
        responses["400"] = _error("the body is not valid JSON, or not an object")
        responses["413"] = _error("the body is too large")
        responses["422"] = _error("a field is invalid (`field` names it)")
    if route.param_convertors:
        responses["404"] = _error("no such object in this account")
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
    for media in op.response_media:
        success.setdefault("content", {})[media] = {"schema": {"type": "string"}}
    responses[str(op.status)] = success
    for status, description in op.extra_statuses.items():
        responses[str(status)] = {**success, "description": description}  # same body
    for status, description in op.errors.items():
        responses[str(status)] = _error(description)
    return item


def _version() -> str:
    try:
        return metadata.version("partyline-gateway")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def build_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every `/v1` route in `routes`."""
    found = api_routes(routes)
    ops = [op for _, route in found if (op := described(route.endpoint)) is not None]
    refs, defs = _schemas(ops)
    paths: dict[str, dict[str, Any]] = {}
    for method, route in found:
        op = described(route.endpoint)
        paths.setdefault(route.path_format, {})[method.lower()] = _path_item(
            method, route, op, refs, defs
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Partyline gateway API",
            "version": _version(),
            "description": (
                "The inbound REST API: JSON in and out, authenticated by an API key in the "
                "`Authorization` header (`<key>` or `Bearer <key>`). Every error is "
                '`{"error": {"code", "message", "field"}}`; unknown fields are refused.'
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(defs.items())),
            "securitySchemes": {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "the API key, as `<key>` or `Bearer <key>`",
                }
            },
        },
        "security": [{"ApiKey": []}],
    }


def document_for(request: Request) -> dict[str, Any]:
    """The document of the app serving `request`, built once per app."""
    state = request.app.state
    cached: dict[str, Any] | None = getattr(state, "openapi_document", None)
    if cached is None:
        cached = build_document(request.app.routes)
        state.openapi_document = cached
    return cached


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document_for(request))


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
