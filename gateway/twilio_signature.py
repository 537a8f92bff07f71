"""Checking `X-Twilio-Signature` on every Twilio route, against the URL Twilio signed.

Twilio signs PUBLIC_BASE_URL + path + query as it called it, not what a proxy in front of us
shows, so the URL is rebuilt from the setting and the raw query string. All form values count,
repeated keys included. JSON bodies (`bodySHA256` in the query) are covered too.
"""

from __future__ import annotations

import hmac
import json
import logging
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from twilio.request_validator import RequestValidator

from gateway.body_limit import TWILIO_LIMIT
from gateway.errors import ApiError
from gateway.state import app_state
from gateway.twilio_client import FORM
from gateway.twilio_params import InvalidParameter, key_part

log = logging.getLogger(__name__)

MAX_BODY = TWILIO_LIMIT  # Twilio's webhook bodies are a few KB; anything larger isn't Twilio
# Twilio's own webhooks carry a few dozen fields; the cap bounds parsing and signing work
# before either starts (counted as `&` separators, so nothing is parsed to refuse).
MAX_FIELDS = 200


class FormFields(dict[str, list[str]]):
    """Form values by key, in the shape `RequestValidator` reads with `getlist`: one dict lookup
    per key. (Starlette's FormData.getlist scans every field per key, which made signing
    quadratic in the field count.)"""

    def getlist(self, key: str) -> list[str]:
        return self[key]


def signed_url(request: Request) -> str:
    # The path from the scope as `request.url.path` reads it, without building the whole URL
    # (a twentieth of an inbound text's CPU).
    scope = request.scope
    query = scope.get("query_string", b"").decode("latin-1")
    url = app_state(request)["settings"].base_url + scope.get("root_path", "") + scope["path"]
    return f"{url}?{query}" if query else url


def _forbidden() -> ApiError:
    return ApiError(403, "forbidden", "missing or invalid X-Twilio-Signature")


async def verified_params(request: Request) -> dict[str, Any]:
    """The webhook's parameters (form or JSON) once its signature checks out; 403 otherwise.

    Repeated form keys become lists; single ones stay strings.
    """
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise _forbidden()
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", "webhook body too large")
    validator = RequestValidator(app_state(request)["settings"].twilio_token)
    url = signed_url(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return _verified_json(request, validator, url, signature, body)
    if content_type != FORM:
        raise ApiError(415, "unsupported_media_type", f"expected {FORM}")
    if body.count(b"&") >= MAX_FIELDS:
        raise ApiError(400, "too_many_fields", f"more than {MAX_FIELDS} form fields")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "form body is not UTF-8") from None
    if not _signed_as_called(validator, url, FormFields(parsed), signature):
        log.warning("twilio signature mismatch path=%s", request.url.path)
        raise _forbidden()
    return {key: (values[0] if len(values) == 1 else values) for key, values in parsed.items()}


def _signed_as_called(
    validator: RequestValidator, url: str, params: FormFields, signature: str
) -> bool:
    """Whether `signature` signs `params` at `url`: first the URL exactly as Twilio called it
    (one HMAC), then `validate`'s own variants of it with and without its port (two more,
    which `validate` always computes)."""
    expected = validator.compute_signature(url, params).encode("ascii")
    # Bytes: a header may hold any latin-1 character, and compare_digest takes only ASCII str.
    if hmac.compare_digest(expected, signature.encode("latin-1")):
        return True
    return bool(validator.validate(url, params, signature))


def _verified_json(
    request: Request, validator: RequestValidator, url: str, signature: str, body: bytes
) -> dict[str, Any]:
    expected_hash = request.query_params.get("bodySHA256", "")
    if not expected_hash or not validator.validate(url, {}, signature):
        raise _forbidden()
    if not hmac.compare_digest(sha256(body).hexdigest(), expected_hash):
        raise _forbidden()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "body must be a JSON object")
    return data


def required(params: dict[str, Any], *names: str) -> list[str]:
    """The named parameters as single strings, each a claim's or a route's key (`key_part`);
    400 naming the first that is missing or too long."""
    values = []
    for name in names:
        value = params.get(name)
        if not isinstance(value, str) or not value:
            raise ApiError(400, "bad_request", f"missing parameter {name}", name)
        try:
            values.append(key_part(value, name))
        except InvalidParameter as exc:
            raise ApiError(400, "bad_request", str(exc), name) from None
    return values
