"""Capture parsers: turn a lead's free-text answer into a value for `additional_info`.

A parser that finds nothing returns None, and the choice then does not match: "I don't know"
to "What loan amount?" should reach the next choice or the catch-all, not store garbage.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

CaptureParser = Literal["text", "number", "money", "datetime"]
CaptureValue = str | int | float
MAX_TEXT = 500  # one long SMS; anything longer is not an answer to a question

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+]?\d+(?:\.\d+)?")
_MONEY = re.compile(
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*"
    r"(?P<scale>k\b|thousand\b|grand\b|mil\b|mill\b|million\b|mm\b|m\b|mn\b)?",
    re.IGNORECASE,
)
_SCALES = {
    "k": 1_000,
    "thousand": 1_000,
    "grand": 1_000,
    "m": 1_000_000,
    "mm": 1_000_000,
    "mn": 1_000_000,
    "mil": 1_000_000,
    "mill": 1_000_000,
    "million": 1_000_000,
}
_DAYS = (
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
    "|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun"
)
_WHEN = re.compile(
    r"\b\d{1,2}(:\d{2})?\s*(am|pm|a\.m\.|p\.m\.)"
    r"|\b\d{1,2}:\d{2}\b"
    r"|\b\d{1,2}/\d{1,2}(/\d{2,4})?\b"
    rf"|\b({_DAYS})\b"
    r"|\b(today|tonight|tomorrow|tmrw|tmr|noon|midnight|morning|afternoon|evening"
    r"|weekend|lunch|hoy|manana|mañana|tarde|noche)\b"
    r"|\bin \d+ ?(min|mins|minutes|hour|hours|hr|hrs)\b",
    re.IGNORECASE,
)


def _number(text: str) -> float | None:
    found = _NUMBER.search(text)
    return float(found.group().replace(",", "")) if found else None


def _tidy(value: float) -> int | float:
    return int(value) if value.is_integer() else round(value, 2)


def parse_number(text: str) -> int | float | None:
    """The first number in a reply: "about 720" -> 720, "1,250.5" -> 1250.5."""
    value = _number(text)
    return None if value is None else _tidy(value)


def parse_money(text: str) -> int | float | None:
    """An amount of money: "$250k" -> 250000, "1.2 million" -> 1200000, "$350,000" -> 350000."""
    found = _MONEY.search(text.replace("$", " ").replace("€", " "))
    if found is None:
        return None
    value = float(found.group("number").replace(",", ""))
    scale = (found.group("scale") or "").lower()
    return _tidy(value * _SCALES.get(scale, 1))


def parse_text(text: str) -> str | None:
    """The reply as written (trimmed, whitespace collapsed); None for an empty or huge one."""
    cleaned = " ".join(text.split())
    return cleaned if 0 < len(cleaned) <= MAX_TEXT else None


def parse_datetime(text: str) -> str | None:
    """A reply that names a time or day ("tomorrow at 3pm", "after 5", "Friday"), kept as said.

    Only the engine knows the lead's time zone and the clock, so the words are stored for a
    person (or a later scheduler) to read rather than guessed into a timestamp here.
    """
    cleaned = parse_text(text)
    if cleaned is None:
        return None
    folded = unicodedata.normalize("NFKC", cleaned)
    if _WHEN.search(folded) or re.search(r"\b(after|before|around|at)\s+\d{1,2}\b", folded, re.I):
        return cleaned
    return None


def parse_capture(parser: CaptureParser, text: str) -> CaptureValue | None:
    """Apply a capture parser to a reply; None when the reply holds no such value."""
    if parser == "number":
        return parse_number(text)
    if parser == "money":
        return parse_money(text)
    if parser == "datetime":
        return parse_datetime(text)
    return parse_text(text)
