"""The control API under /_sandbox/: lets another process script phones, send texts,
inject faults, move time and read the record (the CLI demo, benchmarks).

Protected with the same Basic auth as the REST API (account SID, auth token).
"""

from __future__ import annotations

import base64
import hmac
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from twilio_sandbox.faults import CallbackFault, RestFault
from twilio_sandbox.phones import PhoneScript
from twilio_sandbox.wire import TwilioError

if TYPE_CHECKING:
    from twilio_sandbox.sandbox import Sandbox

PREFIX = "/_sandbox"


class ControlApi:
    """JSON routes over the Sandbox's Python API."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def routes(self) -> list[Route]:
        r = [
            ("/numbers", self.add_number, "POST"),
            ("/phones/{number}", self.script_phone, "PUT"),
            ("/phones/{number}/messages", self.phone_messages, "GET"),
            ("/sms", self.send_sms, "POST"),
            ("/calls", self.place_call, "POST"),
            ("/advance", self.advance, "POST"),
            ("/settle", self.settle, "POST"),
            ("/clock", self.clock, "GET"),
            ("/record/requests", self.requests, "GET"),
            ("/record/callbacks", self.callbacks, "GET"),
            ("/faults/callbacks", self.callback_fault, "POST"),
            ("/faults/rest", self.rest_fault, "POST"),
            ("/faults", self.clear_faults, "DELETE"),
            ("/optouts", self.optouts, "GET"),
        ]
        return [Route(PREFIX + path, self._guard(fn), methods=[m]) for path, fn, m in r]

    def _guard(self, fn: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            expected = f"{self._sb.account_sid}:{self._sb.auth_token}".encode()
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), b"Basic " + base64.b64encode(expected)):
                return JSONResponse(TwilioError(20003, status=401).body(), status_code=401)
            try:
                raw = await request.body()
                body: dict[str, Any] = json.loads(raw) if raw else {}
                result = await fn(request, body)
            except TwilioError as error:
                return JSONResponse(error.body(), status_code=error.status)
            except (KeyError, TypeError, ValueError) as error:  # JSONDecodeError is a ValueError
                return JSONResponse({"error": {"message": str(error)}}, status_code=400)
            return JSONResponse(result)

        return endpoint

    async def add_number(self, request: Request, body: dict[str, Any]) -> Any:
        for name in ("sms_url", "voice_url", "voice_status_callback"):
            if not self._sb.callback_allowed(body.get(name)):
                # 21205 as Twilio answers a bad Url; the sandbox calls only the gateway back.
                raise TwilioError(21205, value=f"{name} must be under {self._sb.callback_base}")
        switches = {name: body.get(name) for name in ("keyword_replies", "stop_filtering")}
        for name, value in switches.items():
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{name} must be true, false or null")
        owned = self._sb.add_number(
            body["number"],
            sms_url=body.get("sms_url"),
            sms_method=body.get("sms_method", "POST"),
            voice_url=body.get("voice_url"),
            voice_method=body.get("voice_method", "POST"),
            voice_status_callback=body.get("voice_status_callback"),
            messaging_service_sid=body.get("messaging_service_sid"),
            keyword_replies=switches["keyword_replies"],
            stop_filtering=switches["stop_filtering"],
        )
        return {"number": owned.number}

    async def script_phone(self, request: Request, body: dict[str, Any]) -> Any:
        number = request.path_params["number"]
        self._sb.phones.script(number, PhoneScript.from_json(body))
        return {"number": number}

    async def phone_messages(self, request: Request, body: dict[str, Any]) -> Any:
        """The phone's side of its texts with our numbers, Twilio's own replies included."""
        found = self._sb.messaging.conversation(request.path_params["number"])
        return [m.to_json() for m in found]

    async def send_sms(self, request: Request, body: dict[str, Any]) -> Any:
        msg = self._sb.send_sms(body["from"], body["to"], body["body"], body.get("media_urls"))
        return msg.to_json()

    async def place_call(self, request: Request, body: dict[str, Any]) -> Any:
        return self._sb.place_call(body["from"], body["to"]).to_json()

    async def advance(self, request: Request, body: dict[str, Any]) -> Any:
        await self._sb.advance(float(body.get("seconds", 0)))
        return await self.clock(request, body)

    async def settle(self, request: Request, body: dict[str, Any]) -> Any:
        await self._sb.settle(float(body.get("limit_seconds", 24 * 3600)))
        return await self.clock(request, body)

    async def clock(self, request: Request, body: dict[str, Any]) -> Any:
        return {"now": self._sb.clock.now().isoformat(), "seconds": self._sb.clock.seconds}

    async def requests(self, request: Request, body: dict[str, Any]) -> Any:
        query = dict(request.query_params)
        kind = query.pop("kind", None)
        return [e.as_dict() for e in self._sb.record.select_requests(kind, None, query)]

    async def callbacks(self, request: Request, body: dict[str, Any]) -> Any:
        query = dict(request.query_params)
        kind, url = query.pop("kind", None), query.pop("url", None)
        return [e.as_dict() for e in self._sb.record.select_callbacks(kind, url, None, query)]

    async def callback_fault(self, request: Request, body: dict[str, Any]) -> Any:
        self._sb.faults.add_callback(CallbackFault(**body))
        return {"ok": True}

    async def rest_fault(self, request: Request, body: dict[str, Any]) -> Any:
        self._sb.faults.add_rest(RestFault(**body))
        return {"ok": True}

    async def clear_faults(self, request: Request, body: dict[str, Any]) -> Any:
        self._sb.faults.clear()
        return {"ok": True}

    async def optouts(self, request: Request, body: dict[str, Any]) -> Any:
        pairs = sorted(self._sb.messaging.opted_out)
        return [{"phone": phone, "number": number} for phone, number in pairs]
