"""Twilio's wire conventions: SIDs, dates, phone-number checks, errors, segments, pages."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")

# The characters of the GSM 03.38 default alphabet (plus its extension table);
# a body using anything else is sent as UCS-2, which changes segment sizes.
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = set("^{}\\[~]|€")

MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21201: "No 'To' number is specified",
    21205: "Url is not a valid URL: {value}",
    21211: "The 'To' number {value} is not a valid phone number.",
    21212: (
        "The 'From' number {value} is not a valid phone number, shortcode, "
        "or alphanumeric sender ID."
    ),
    21602: "Message body is required.",
    21606: (
        "The From phone number {value} is not a valid, SMS-capable inbound phone number "
        "or short code for your account."
    ),
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21210: "The source phone number provided, {value}, is not yet verified for your account.",
    21220: "Call is not in-progress. Cannot redirect.",
    21421: "PhoneNumber is invalid: {value}",
    21422: "PhoneNumber is not available: {value}",
}


class Form:
    """Form or query parameters with repeated keys kept, as Twilio receives them."""

    def __init__(self, items: Sequence[tuple[str, str]] = ()) -> None:
        self.items = list(items)

    def get(self, key: str, default: str = "") -> str:
        return next((v for k, v in self.items if k == key), default)

    def getall(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key]

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.items)


def new_sid(prefix: str) -> str:
    """A SID like Twilio's: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def rfc2822(instant: datetime | None) -> str | None:
    """Twilio's date format in JSON bodies: 'Mon, 16 Aug 2010 03:45:01 +0000'."""
    if instant is None:
        return None
    return format_datetime(instant.astimezone(UTC).replace(microsecond=0))


def is_e164(number: str) -> bool:
    return bool(E164.match(number))


class _Blank(dict[str, str]):
    # Leaves a placeholder empty rather than failing when a detail is unknown.
    def __missing__(self, key: str) -> str:
        return ""


class TwilioError(Exception):
    """An error the REST API answers in Twilio's body shape."""

    def __init__(
        self, code: int, status: int = 400, headers: dict[str, str] | None = None, **fmt: str
    ) -> None:
        template = MESSAGES.get(code, "Error {code}")
        self.code = code
        self.status = status
        self.headers = headers or {}
        self.message = template.format_map(_Blank(code=str(code), **fmt))
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def segments(body: str) -> int:
    """How many SMS segments a body takes (GSM-7: 160/153, UCS-2: 70/67)."""
    if all(ch in _GSM7 or ch in _GSM7_EXT for ch in body):
        units = sum(2 if ch in _GSM7_EXT else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def parse_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"true", "1", "yes"}


def parse_date_filter(value: str) -> datetime | date:
    """DateSent filters come as 'YYYY-MM-DD' or as an ISO 8601 datetime."""
    text = value.strip()
    if len(text) == 10:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def page(
    key: str,
    records: Sequence[Mapping[str, Any]],
    uri: str,
    query: Mapping[str, str],
) -> dict[str, Any]:
    """One page of a list in Twilio's shape, with Page/PageSize paging."""
    size = max(1, min(1000, int(query.get("PageSize", "50") or 50)))
    number = max(0, int(query.get("Page", "0") or 0))
    start = number * size
    chunk = list(records[start : start + size])
    base = {k: v for k, v in query.items() if k not in {"Page", "PageSize", "PageToken"}}

    def link(n: int) -> str:
        return f"{uri}?{urlencode({**base, 'PageSize': size, 'Page': n})}"

    has_next = start + size < len(records)
    return {
        key: chunk,
        "end": start + max(0, len(chunk) - 1),
        "first_page_uri": link(0),
        "next_page_uri": link(number + 1) if has_next else None,
        "page": number,
        "page_size": size,
        "previous_page_uri": link(number - 1) if number > 0 else None,
        "start": start,
        "uri": link(number),
    }
