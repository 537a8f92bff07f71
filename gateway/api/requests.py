"""Reading request bodies and query strings into pydantic models, with precise 4xx errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.body_limit import API_LIMIT
from gateway.errors import ApiError

M = TypeVar("M", bound=BaseModel)

# The body-limit middleware refuses larger bodies before they are read; this is its figure.
MAX_BODY = API_LIMIT


def _field(loc: tuple[int | str, ...]) -> str:
    # Models validate the parsed body or query itself, so every part of `loc` is a field name
    # (a field may well be called `body`, as a text's is).
    return ".".join(str(part) for part in loc)


def validation_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> ApiError:
    """The first problem of a pydantic error, as a 422 naming the field (under `prefix`)."""
    first = exc.errors()[0]
    field = _field((*prefix, *first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    return ApiError(422, "invalid", f"{field}: {message}" if field else message, field or None)


async def read_json(request: Request, model: type[M]) -> M:
    """The JSON body as `model` (unknown fields refused by the model's config)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body larger than {MAX_BODY} bytes")
    try:
        data: Any = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "bad_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def read_query(request: Request, model: type[M]) -> M:
    """The query string as `model`; repeated keys are refused unless the field is a list."""
    params: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        params[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise validation_error(exc) from None
