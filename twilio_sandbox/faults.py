"""Faults on demand: misbehaving callbacks and REST answers, for reliability tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

CallbackAction = Literal["duplicate", "drop", "delay", "reorder"]
RestAction = Literal["error500", "hang", "rate_limit"]


@dataclass
class CallbackFault:
    """Applies to the next `times` callbacks that match every given filter.

    duplicate: sent twice (a TwiML fetch, e.g. `gather.action`: asked twice, as Twilio does
    when an answer is lost, and the second answer is followed; other actions don't apply to
    fetches); drop: never sent (recorded with fault="drop");
    delay: sent `delay` virtual seconds late (so later ones overtake it);
    reorder: held back until the next matching callback has been sent.
    """

    action: CallbackAction
    kind: str | None = None  # "sms.status", "call.status", "conference.status", ...
    params: dict[str, str] = field(default_factory=dict)  # e.g. {"MessageStatus": "sent"}
    times: int = 1
    delay: float = 30.0

    def matches(self, kind: str, params: dict[str, str]) -> bool:
        if self.times <= 0:
            return False
        if self.kind is not None and kind != self.kind:
            return False
        return all(params.get(k) == v for k, v in self.params.items())


@dataclass
class RestFault:
    """Makes REST requests of a kind (or all) fail: for `times` requests or until `until`.

    error500: answers 500 (code 20500); rate_limit: 429 (code 20429), with a Retry-After
    header of `retry_after` seconds when that is set;
    hang: never answers, until the fault is cleared or the sandbox closes
    (the client's own timeout is what the test exercises).
    """

    action: RestAction
    kind: str | None = None  # "messages.create", ...; None = every request
    times: int | None = 1  # None = no count limit
    until: float | None = None  # virtual seconds since the clock's start
    retry_after: int | None = None  # whole seconds, as HTTP has it

    def matches(self, kind: str, now: float) -> bool:
        if self.kind is not None and kind != self.kind:
            return False
        if self.until is not None and now >= self.until:
            return False
        return self.times is None or self.times > 0


class Faults:
    """The active faults; each matching use consumes one `times`."""

    def __init__(self) -> None:
        self.callback_faults: list[CallbackFault] = []
        self.rest_faults: list[RestFault] = []
        self.released = asyncio.Event()

    def add_callback(self, fault: CallbackFault) -> CallbackFault:
        self.callback_faults.append(fault)
        return fault

    def add_rest(self, fault: RestFault) -> RestFault:
        self.rest_faults.append(fault)
        self.released.clear()
        return fault

    def take_callback(self, kind: str, params: dict[str, str]) -> CallbackFault | None:
        for fault in self.callback_faults:
            if fault.matches(kind, params):
                fault.times -= 1
                return fault
        return None

    def take_fetch(self, kind: str, params: dict[str, str]) -> CallbackFault | None:
        """A `duplicate` naming this TwiML fetch's kind; faults without a kind are left to
        callbacks, as before fetches could be faulted."""
        for fault in self.callback_faults:
            if fault.action == "duplicate" and fault.kind == kind and fault.matches(kind, params):
                fault.times -= 1
                return fault
        return None

    def take_rest(self, kind: str, now: float) -> RestFault | None:
        for fault in self.rest_faults:
            if fault.matches(kind, now):
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def clear(self) -> None:
        """Remove every fault and let hanging requests answer."""
        self.callback_faults.clear()
        self.rest_faults.clear()
        self.released.set()
