"""Outgoing HTTP from the sandbox to the gateway: signed like Twilio, recorded, faultable.

Two ways out: `post()` queues a callback (status, inbound SMS, conference
events) on an ordered outbox per resource, so one message's `sent` never
overtakes its `delivered` unless a fault says so; `fetch()` asks a URL for
TwiML and waits for the answer (call Url, Gather/Dial actions, Redirect).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import httpx
from twilio.request_validator import RequestValidator

from twilio_sandbox.faults import CallbackFault, Faults
from twilio_sandbox.record import CallbackEntry, Record
from twilio_sandbox.scheduler import Scheduler

_log = logging.getLogger("twilio_sandbox.callbacks")

OnAnswer = Callable[[CallbackEntry], Coroutine[Any, Any, None]]


@dataclass
class _Outgoing:
    kind: str
    url: str
    params: dict[str, str]
    method: str
    on_answer: OnAnswer | None = None


class Webhooks:
    """Signs and sends every request the sandbox makes to a webhook URL."""

    def __init__(
        self,
        auth_token: str,
        record: Record,
        faults: Faults,
        scheduler: Scheduler,
        timeout: float = 15.0,
        *,
        callback_base: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._validator = RequestValidator(auth_token)
        self._callback_base = callback_base
        self._record = record
        self._faults = faults
        self._scheduler = scheduler
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._outboxes: dict[str, deque[_Outgoing]] = {}
        self._held: list[tuple[CallbackFault, _Outgoing]] = []

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        return self._client

    def sign(self, url: str, params: dict[str, str], method: str = "POST") -> str:
        """X-Twilio-Signature as Twilio computes it (GET: query in the URL, no params)."""
        if method.upper() == "GET":
            return str(self._validator.compute_signature(_with_query(url, params), {}))
        return str(self._validator.compute_signature(url, params))

    # -- ordered callbacks --------------------------------------------------

    def post(
        self,
        key: str,
        kind: str,
        url: str | None,
        params: dict[str, str],
        *,
        method: str = "POST",
        on_answer: OnAnswer | None = None,
    ) -> None:
        """Queue a callback for resource `key`; sent in order when time next runs."""
        if not url:
            return
        outbox = self._outboxes.get(key)
        item = _Outgoing(kind, url, dict(params), method or "POST", on_answer)
        if outbox is not None:
            outbox.append(item)
            return
        self._outboxes[key] = deque([item])
        self._scheduler.spawn(lambda: self._drain(key))

    async def _drain(self, key: str) -> None:
        outbox = self._outboxes[key]
        try:
            while outbox:
                await self._deliver(outbox.popleft())
        finally:
            del self._outboxes[key]

    async def _deliver(self, item: _Outgoing) -> None:
        fault = self._faults.take_callback(item.kind, item.params)
        if fault is None:
            await self._send_now(item)
        elif fault.action == "drop":
            self._record_only(item, "drop")
        elif fault.action == "duplicate":
            await self._send_now(item)
            await self._send_now(item, fault="duplicate")
        elif fault.action == "delay":

            async def late() -> None:
                await self._send_now(item, fault="delay")

            self._scheduler.spawn(late, fault.delay)
        else:
            self._held.append((fault, item))
            # A held callback is released when the next one of its kind goes out,
            # or after `delay` if none does.
            self._scheduler.spawn(lambda: self._release(item), fault.delay)
            return
        await self._release_held(item)

    async def _release_held(self, sent: _Outgoing) -> None:
        ready = [(f, i) for f, i in self._held if i.kind == sent.kind and i.url == sent.url]
        for pair in ready:
            self._held.remove(pair)
            await self._send_now(pair[1], fault="reorder")

    async def _release(self, item: _Outgoing) -> None:
        for pair in self._held:
            if pair[1] is item:
                self._held.remove(pair)
                await self._send_now(item, fault="reorder")
                return

    def _record_only(self, item: _Outgoing, fault: str) -> None:
        signature = self.sign(item.url, item.params, item.method)
        self._record.add_callback(
            CallbackEntry(
                item.kind,
                item.url,
                item.method,
                item.params,
                signature,
                self._scheduler.clock.now(),
                fault=fault,
            )
        )

    async def _send_now(self, item: _Outgoing, fault: str | None = None) -> CallbackEntry:
        entry = await self.fetch(item.kind, item.url, item.params, item.method, fault=fault)
        if item.on_answer is not None and fault is None:
            await item.on_answer(entry)
        return entry

    # -- request/response ---------------------------------------------------

    async def fetch(
        self,
        kind: str,
        url: str,
        params: dict[str, str],
        method: str = "POST",
        fault: str | None = None,
    ) -> CallbackEntry:
        """Send one signed request now and record it with the answer."""
        method = (method or "POST").upper()
        signature = self.sign(url, params, method)
        entry = CallbackEntry(
            kind, url, method, dict(params), signature, self._scheduler.clock.now(), fault=fault
        )
        self._record.add_callback(entry)
        base = self._callback_base()
        if base is not None and not under_base(url, base):
            # Whatever set this URL (a status callback of a REST create, a TwiML action), the
            # sandbox inside the gateway calls back only the gateway's own routes.
            entry.error = f"refused: not under {base}"
            _log.warning("sandbox %s callback to %s refused: not the gateway", kind, url)
            return entry
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        try:
            if method == "GET":
                response = await self._http().get(_with_query(url, params), headers=headers)
            else:
                response = await self._http().post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            entry.error = f"{type(exc).__name__}: {exc}"
            _log.warning("sandbox %s callback to %s failed: %s", kind, url, entry.error)
            return entry
        entry.status = response.status_code
        entry.body = response.text
        return entry


def _with_query(url: str, params: dict[str, str]) -> str:
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def under_base(url: str, base: str) -> bool:
    """Is `url` the base itself or a path below it (same scheme, host and port, no userinfo)?"""
    try:
        given, allowed = urlsplit(url), urlsplit(base)
        same_port = given.port == allowed.port
    except ValueError:  # a port that is not a number
        return False
    if (
        given.scheme.lower() != allowed.scheme.lower()
        or given.username is not None
        or given.password is not None
        or (given.hostname or "") != (allowed.hostname or "")
        or not same_port
    ):
        return False
    if any(part in (".", "..") for part in unquote(given.path).split("/")):
        return False  # /base/../elsewhere climbs out of the base on the receiving server
    prefix = allowed.path.rstrip("/")
    return given.path == prefix or given.path.startswith(prefix + "/")
