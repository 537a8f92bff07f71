"""The REST API of Twilio 2010-04-01 as the sandbox serves it: routes, auth, faults, record."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from twilio_sandbox import numbers
from twilio_sandbox.record import RequestEntry
from twilio_sandbox.wire import API_VERSION, Form, TwilioError, page

if TYPE_CHECKING:
    from twilio_sandbox.sandbox import Sandbox

Result = tuple[dict[str, Any] | None, int]
Handler = Callable[[dict[str, str], Form], Result]

ACCOUNT = f"/{API_VERSION}/Accounts/{{account}}"


class RestApi:
    """Builds the Starlette routes that answer the twilio library."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self._recent: deque[float] = deque()

    def routes(self) -> list[Route]:
        sb = self._sb
        msgs, calls, confs = sb.messaging, sb.calls, sb.conferences
        base = f"/{API_VERSION}/Accounts/{sb.account_sid}"

        def list_of(key: str, items: list[dict[str, Any]], path: str, form: Form) -> Result:
            return page(key, items, f"{base}/{path}", dict(form.items)), 200

        handlers: list[tuple[str, str, str, Handler]] = [
            (
                "POST",
                "Messages.json",
                "messages.create",
                lambda p, f: (msgs.create(f).to_json(), 201),
            ),
            (
                "GET",
                "Messages.json",
                "messages.list",
                lambda p, f: list_of(
                    "messages", [m.to_json() for m in msgs.search(f.items)], "Messages.json", f
                ),
            ),
            (
                "GET",
                "Messages/{sid}.json",
                "messages.fetch",
                lambda p, f: (msgs.get(p["sid"]).to_json(), 200),
            ),
            ("POST", "Calls.json", "calls.create", lambda p, f: (calls.create(f).to_json(), 201)),
            (
                "GET",
                "Calls.json",
                "calls.list",
                lambda p, f: list_of(
                    "calls", [c.to_json() for c in _calls(sb, f)], "Calls.json", f
                ),
            ),
            (
                "GET",
                "Calls/{sid}.json",
                "calls.fetch",
                lambda p, f: (calls.get(p["sid"]).to_json(), 200),
            ),
            (
                "POST",
                "Calls/{sid}.json",
                "calls.update",
                lambda p, f: (calls.update(p["sid"], f).to_json(), 200),
            ),
            (
                "GET",
                "Conferences.json",
                "conferences.list",
                lambda p, f: list_of(
                    "conferences", [c.to_json() for c in _conferences(sb, f)], "Conferences.json", f
                ),
            ),
            (
                "GET",
                "Conferences/{sid}.json",
                "conferences.fetch",
                lambda p, f: (confs.get(p["sid"]).to_json(), 200),
            ),
            (
                "POST",
                "Conferences/{sid}.json",
                "conferences.update",
                lambda p, f: (confs.update(p["sid"], f).to_json(), 200),
            ),
            (
                "POST",
                "Conferences/{sid}/Participants.json",
                "participants.create",
                lambda p, f: (confs.add_participant(p["sid"], f).to_json(), 201),
            ),
            (
                "GET",
                "Conferences/{sid}/Participants.json",
                "participants.list",
                lambda p, f: list_of(
                    "participants",
                    [x.to_json() for x in confs.get(p["sid"]).participants.values()],
                    f"Conferences/{p['sid']}/Participants.json",
                    f,
                ),
            ),
            (
                "GET",
                "Conferences/{sid}/Participants/{call}.json",
                "participants.fetch",
                lambda p, f: (confs.participant(p["sid"], p["call"]).to_json(), 200),
            ),
            (
                "POST",
                "Conferences/{sid}/Participants/{call}.json",
                "participants.update",
                lambda p, f: (confs.update_participant(p["sid"], p["call"], f).to_json(), 200),
            ),
            (
                "DELETE",
                "Conferences/{sid}/Participants/{call}.json",
                "participants.delete",
                lambda p, f: confs.kick(p["sid"], p["call"]),
            ),
            (
                "GET",
                "IncomingPhoneNumbers.json",
                "incoming_phone_numbers.list",
                lambda p, f: list_of(
                    "incoming_phone_numbers",
                    numbers.list_numbers(sb, f),
                    "IncomingPhoneNumbers.json",
                    f,
                ),
            ),
            (
                "POST",
                "IncomingPhoneNumbers.json",
                "incoming_phone_numbers.create",
                lambda p, f: (numbers.buy_number(sb, f), 201),
            ),
            (
                "GET",
                "IncomingPhoneNumbers/{sid}.json",
                "incoming_phone_numbers.fetch",
                lambda p, f: (numbers.fetch_number(sb, p["sid"]), 200),
            ),
        ]
        by_path: dict[str, dict[str, tuple[str, Handler]]] = {}
        for method, path, kind, handler in handlers:
            by_path.setdefault(f"{ACCOUNT}/{path}", {})[method] = (kind, handler)
        # Messaging v1 lives on messaging.twilio.com; the client rewrites that host here too.
        service = f"{numbers.MESSAGING_V1}/{{sid}}"
        by_path[service] = {
            "GET": ("services.fetch", lambda p, f: (numbers.service_json(sb, p["sid"]), 200))
        }
        by_path[f"{service}/PhoneNumbers"] = {
            "GET": (
                "services.phone_numbers.list",
                lambda p, f: (numbers.service_numbers_page(sb, p["sid"]), 200),
            )
        }
        return [
            Route(path, self._endpoint(methods), methods=list(methods))
            for path, methods in by_path.items()
        ]

    def _endpoint(
        self, methods: dict[str, tuple[str, Handler]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            kind, handler = methods[request.method]
            items = list(request.query_params.multi_items())
            if request.method == "POST":
                async with request.form() as form:
                    items += [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            entry = RequestEntry(
                kind, request.method, request.url.path, items, self._sb.clock.now()
            )
            self._sb.record.add_request(entry)
            try:
                self._check_auth(request)
                await self._apply_faults(kind)
                body, status = handler(dict(request.path_params), Form(items))
            except TwilioError as error:
                entry.status, entry.error_code = error.status, error.code
                return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
            entry.status = status
            if body is not None:
                entry.sid = body.get("sid") or body.get("call_sid")
                return JSONResponse(body, status_code=status)
            return Response(status_code=status)

        return endpoint

    def _check_auth(self, request: Request) -> None:
        sb = self._sb
        header = request.headers.get("authorization", "")
        user, _, password = "", "", ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:]).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
        ok = (
            hmac.compare_digest(user, sb.account_sid)
            and hmac.compare_digest(password, sb.auth_token)
            # Messaging v1 paths name no account: the credentials alone say whose it is.
            and request.path_params.get("account", sb.account_sid) == sb.account_sid
        )
        if not ok:
            raise TwilioError(20003, status=401)

    async def _apply_faults(self, kind: str) -> None:
        sb = self._sb
        now = sb.clock.seconds
        fault = sb.faults.take_rest(kind, now)
        if fault is not None:
            if fault.action == "hang":
                await sb.faults.released.wait()
                raise TwilioError(20500, status=500)
            if fault.action == "error500":
                raise TwilioError(20500, status=500)
            wait = fault.retry_after
            headers = {} if wait is None else {"Retry-After": str(wait)}
            raise TwilioError(20429, status=429, headers=headers)
        if sb.rate_limit is not None:
            # A one-second sliding window of virtual time, per account.
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= sb.rate_limit:
                raise TwilioError(20429, status=429)
            self._recent.append(now)


def _calls(sb: Sandbox, form: Form) -> list[Any]:
    found = sorted(sb.calls.calls.values(), key=lambda c: c.date_created, reverse=True)
    for key, attr in (("To", "to"), ("From", "from_"), ("Status", "status")):
        if form.get(key):
            found = [c for c in found if getattr(c, attr) == form.get(key)]
    return found


def _conferences(sb: Sandbox, form: Form) -> list[Any]:
    found = sorted(sb.conferences.conferences.values(), key=lambda c: c.date_created, reverse=True)
    for key, attr in (("FriendlyName", "friendly_name"), ("Status", "status")):
        if form.get(key):
            found = [c for c in found if getattr(c, attr) == form.get(key)]
    return found
