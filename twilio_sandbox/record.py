"""The sandbox's record of everything: REST requests received and callbacks sent.

Tests prove behaviour from here ("exactly one Messages.create per message"),
so entries keep repeated form keys and the virtual time they happened at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def twilio_name(snake: str) -> str:
    """'status_callback' -> 'StatusCallback': lets filters use Python keyword names."""
    if any(ch.isupper() for ch in snake):
        return snake
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


@dataclass
class RequestEntry:
    """One REST request the gateway made to the sandbox."""

    kind: str  # e.g. "messages.create", "calls.update", "participants.delete"
    method: str
    path: str
    params: list[tuple[str, str]]  # form body and query, repeated keys kept in order
    at: datetime
    status: int = 0
    sid: str | None = None  # SID of the resource the request created or touched
    error_code: int | None = None
    # Wall-clock arrival (epoch seconds): `at` is virtual time; benchmarks time the real path.
    received: float = field(default_factory=time.time)

    def get(self, name: str) -> str | None:
        """First value of a parameter (Twilio name or snake_case)."""
        key = twilio_name(name)
        return next((v for k, v in self.params if k == key), None)

    def getall(self, name: str) -> list[str]:
        key = twilio_name(name)
        return [v for k, v in self.params if k == key]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "params": [list(p) for p in self.params],
            "at": self.at.isoformat(),
            "status": self.status,
            "sid": self.sid,
            "error_code": self.error_code,
            "received": self.received,
        }


@dataclass
class CallbackEntry:
    """One HTTP request the sandbox sent to a webhook (status, inbound, TwiML fetch...)."""

    kind: str  # "sms.status", "sms.inbound", "call.status", "call.amd", "call.twiml",
    # "gather.action", "dial.action", "conference.status", "participant.status"
    url: str
    method: str
    params: dict[str, str]
    signature: str
    at: datetime
    status: int | None = None  # HTTP status of the answer; None when it failed or was dropped
    body: str = ""
    error: str | None = None
    fault: str | None = None  # the fault applied to it: duplicate, reorder, delay, drop

    def get(self, name: str) -> str | None:
        return self.params.get(twilio_name(name))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "method": self.method,
            "params": self.params,
            "signature": self.signature,
            "at": self.at.isoformat(),
            "status": self.status,
            "error": self.error,
            "fault": self.fault,
        }


def _matches(values: dict[str, str | None], filters: dict[str, str]) -> bool:
    return all(values.get(twilio_name(k)) == v for k, v in filters.items())


@dataclass
class Record:
    """Append-only log of requests and callbacks, with simple queries."""

    request_log: list[RequestEntry] = field(default_factory=list)
    callback_log: list[CallbackEntry] = field(default_factory=list)

    def add_request(self, entry: RequestEntry) -> None:
        self.request_log.append(entry)

    def add_callback(self, entry: CallbackEntry) -> None:
        self.callback_log.append(entry)

    def requests(
        self, kind: str | None = None, *, status: int | None = None, **params: str
    ) -> list[RequestEntry]:
        """Requests of a kind whose first value of each given parameter matches.

        `record.requests("messages.create", to="+15551234567")`
        """
        return self.select_requests(kind, status, params)

    def select_requests(
        self, kind: str | None, status: int | None, params: dict[str, str]
    ) -> list[RequestEntry]:
        """`requests()` with the filters as a dict (for the control API)."""
        out = []
        for entry in self.request_log:
            if kind is not None and entry.kind != kind:
                continue
            if status is not None and entry.status != status:
                continue
            if _matches({k: entry.get(k) for k in map(twilio_name, params)}, params):
                out.append(entry)
        return out

    def callbacks(
        self,
        kind: str | None = None,
        *,
        url: str | None = None,
        delivered: bool | None = None,
        **params: str,
    ) -> list[CallbackEntry]:
        """Callbacks of a kind (and URL) whose parameters match, in the order sent.

        `delivered=True` keeps those the receiver answered with 2xx.
        """
        return self.select_callbacks(kind, url, delivered, params)

    def select_callbacks(
        self, kind: str | None, url: str | None, delivered: bool | None, params: dict[str, str]
    ) -> list[CallbackEntry]:
        """`callbacks()` with the filters as a dict (for the control API)."""
        out = []
        for entry in self.callback_log:
            if kind is not None and entry.kind != kind:
                continue
            if url is not None and entry.url != url:
                continue
            ok = entry.status is not None and 200 <= entry.status < 300
            if delivered is not None and ok != delivered:
                continue
            if _matches({k: entry.get(k) for k in map(twilio_name, params)}, params):
                out.append(entry)
        return out

    def __iter__(self) -> Iterator[RequestEntry | CallbackEntry]:
        merged: list[RequestEntry | CallbackEntry] = [*self.request_log, *self.callback_log]
        return iter(sorted(merged, key=lambda e: e.at))

    def clear(self) -> None:
        self.request_log.clear()
        self.callback_log.clear()
