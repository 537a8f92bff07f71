"""Whole numbers in Twilio's webhook parameters (NumMedia, ErrorCode, SequenceNumber, ...), and
the length of the values a webhook is claimed by (`key_part`).

Twilio sends them as ASCII digits. `int()` is far more lenient (`int("٣") == 3`, `int("1_0")`,
`" +7 "`) and refuses some strings `str.isdigit()` accepts (`"²"`), so it is not used on a
parameter directly: anything but `[0-9]+` within the field's range is an `InvalidParameter`,
which the routes answer with a 400 naming the field. Imports nothing else of ours, so the
voice core can use it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_DIGITS = re.compile(r"[0-9]{1,18}")  # 18 digits: far past every range below, and cheap to int()

INT32_MAX = 2**31 - 1  # what an INTEGER column holds on PostgreSQL
# The longest value of a parameter a webhook is claimed or routed by (a SID is 34 characters, a
# status one word, a number at most 20): a longer one is not from Twilio, and a claim's key, made
# of two of them, must fit `webhook_claims.key` (200): past it PostgreSQL refused the INSERT and
# the request was a 500.
MAX_KEY_PART = 64


class InvalidParameter(ValueError):
    """A parameter that is present but not a whole number in its range."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def key_part(value: str, field: str) -> str:
    """`value`, if no longer than MAX_KEY_PART; InvalidParameter otherwise."""
    if len(value) > MAX_KEY_PART:
        raise InvalidParameter(field, f"{field} must be at most {MAX_KEY_PART} characters")
    return value


def parse_count(raw: str, field: str, *, maximum: int = INT32_MAX) -> int:
    """`raw` as a whole number 0..maximum, ASCII digits only; InvalidParameter otherwise."""
    if _DIGITS.fullmatch(raw) is None or int(raw) > maximum:
        raise InvalidParameter(field, f"{field} must be a whole number from 0 to {maximum}")
    return int(raw)


def optional_count(
    params: Mapping[str, object], field: str, *, maximum: int = INT32_MAX
) -> int | None:
    """The parameter as a whole number, or None when it is absent or empty."""
    raw = params.get(field)
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):  # a repeated key: Twilio sends each parameter once
        raise InvalidParameter(field, f"{field} must be given once")
    return parse_count(raw, field, maximum=maximum)
