"""Scriptable phones: how each simulated handset behaves when texted or called."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

LineType = Literal["mobile", "landline", "voip"]
AnsweredBy = Literal["human", "machine_start", "machine_end_beep", "fax", "unknown"]


@dataclass
class Reply:
    """A text the phone sends back after receiving one of our messages."""

    body: str
    after: float = 5.0  # virtual seconds after delivery


@dataclass
class PhoneScript:
    """What one phone does. Defaults: a mobile that answers after 3 s, a human.

    Lists (`digits`, `replies`) are consumed in order: the first Gather gets
    `digits[0]`, the second `digits[1]`; each delivered SMS takes the next reply.
    """

    answer: bool = True
    answer_after: float = 3.0  # seconds of ringing before pickup
    busy: bool = False
    voicemail: bool = False  # answers, AMD says machine_end_beep (or machine_start)
    answered_by: AnsweredBy | None = None  # override what AMD reports
    amd_after: float | None = None  # override how long detection takes
    digits: list[str] = field(default_factory=list)
    hangup_after: float | None = None  # seconds after answering
    line_type: LineType = "mobile"
    unreachable: bool = False  # SMS undelivered 30003, calls fail
    delivery_after: float = 1.0  # seconds from `sent` to `delivered`
    replies: list[Reply] = field(default_factory=list)
    # Answered by a person (the gateway's dev phone page): calls ring until `Calls.answer_by_hand`
    # (or their ring timeout), and a Gather with no digits queued waits for `Calls.press`.
    by_hand: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PhoneScript:
        """Build from the control API's JSON (same field names)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        replies = [
            Reply(**r) if isinstance(r, dict) else Reply(str(r)) for r in known.pop("replies", [])
        ]
        digits = [str(d) for d in known.pop("digits", [])]
        return cls(**known, replies=replies, digits=digits)


class Phone:
    """A phone's script plus the state it consumes (next digits, next reply)."""

    def __init__(self, number: str, script: PhoneScript) -> None:
        self.number = number
        self.script = script
        self._digits = deque(script.digits)
        self._replies = deque(script.replies)

    def next_digits(self) -> str | None:
        return self._digits.popleft() if self._digits else None

    def queue_digits(self, digits: str) -> None:
        """Digits pressed by hand before the Gather that takes them."""
        self._digits.append(digits)

    def next_reply(self) -> Reply | None:
        return self._replies.popleft() if self._replies else None

    def amd_result(self, mode: str) -> tuple[AnsweredBy, float]:
        """What machine detection concludes for this phone and how long it takes."""
        s = self.script
        if s.answered_by is not None:
            result: AnsweredBy = s.answered_by
        elif s.voicemail:
            # Only DetectMessageEnd waits for the beep; Enable reports at greeting start.
            result = "machine_end_beep" if mode == "DetectMessageEnd" else "machine_start"
        else:
            result = "human"
        default = {"human": 2.5, "machine_start": 4.0, "fax": 3.0, "unknown": 30.0}
        return result, s.amd_after if s.amd_after is not None else default.get(result, 12.0)


class PhoneBook:
    """Every simulated phone; numbers nobody scripted behave as `PhoneScript()`."""

    def __init__(self) -> None:
        self._phones: dict[str, Phone] = {}

    def script(self, number: str, script: PhoneScript | None = None, **fields: Any) -> Phone:
        """Set how `number` behaves: `script(n, answer_after=2, digits=["1"])`."""
        phone = Phone(number, script or PhoneScript(**fields))
        self._phones[number] = phone
        return phone

    def get(self, number: str) -> Phone:
        if number not in self._phones:
            self._phones[number] = Phone(number, PhoneScript())
        return self._phones[number]
