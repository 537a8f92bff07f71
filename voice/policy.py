"""The party line's policy: the knobs a playbook or an account sets for one party line.

A Policy is plain data, built once when the party line starts and stored next to
its state (`to_json` / `from_json`), so a party line keeps the rules it started
with even if the playbook is edited while the calls are live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any, Literal, get_args

MachineBehaviour = Literal["voicemail", "hangup"]

# Twilio bounds: calls.create Timeout is 5..600 s; Gather timeout is 1..? (we cap at 60).
MIN_RING_TIMEOUT, MAX_RING_TIMEOUT = 5, 600
MIN_WHISPER_TIMEOUT, MAX_WHISPER_TIMEOUT = 1, 60

DEFAULT_GREETING = (
    "Hi {lead_name}, this is {business_name}. Please hold while we connect you with {rep_name}."
)
DEFAULT_WHISPER = (
    "New lead from {source}: {lead_name}. {answers} Press 1 to connect, or hang up to pass."
)
DEFAULT_FALLBACK = (
    "Sorry, nobody at {business_name} is available right now. "
    "Press 1 and we will call you back, or hang up."
)
DEFAULT_VOICEMAIL = (
    "Hi {lead_name}, this is {business_name} returning your request. "
    "We will follow up by text. Thank you."
)
DEFAULT_OPT_OUT_PROMPT = "To stop receiving calls from us, press 9."


class _Blank(dict[str, str]):
    """Template values where a missing name renders as a neutral phrase, never a KeyError."""

    def __missing__(self, key: str) -> str:
        return {"rep_name": "one of our team", "lead_name": "there"}.get(key, "")


def render(template: str, **values: str | None) -> str:
    """Fill a `{name}` template; unknown or empty names become neutral words."""
    clean = _Blank({k: v for k, v in values.items() if v})
    return " ".join(template.format_map(clean).split())


@dataclass(frozen=True)
class Policy:
    """How one party line behaves (timeouts in seconds unless a timedelta)."""

    business_name: str = "our team"
    max_rep_attempts: int = 3
    rep_answer_timeout: int = 20
    whisper_timeout: int = 8
    lead_answer_timeout: int = 30
    lead_amd: bool = True
    rep_amd: bool = False
    unknown_is_human: bool = True
    lead_retries: int = 1
    lead_retry_delay: timedelta = timedelta(minutes=10)
    text_back_when_unreached: bool = True
    text_back_when_rep_unsuccessful: bool = False
    machine: MachineBehaviour = "voicemail"
    watchdog_timeout: timedelta = timedelta(minutes=5)
    max_call_duration: timedelta = timedelta(hours=2)
    greeting_text: str = DEFAULT_GREETING
    whisper_text: str = DEFAULT_WHISPER
    fallback_text: str = DEFAULT_FALLBACK
    voicemail_text: str = DEFAULT_VOICEMAIL
    opt_out_prompt: str = DEFAULT_OPT_OUT_PROMPT

    def __post_init__(self) -> None:
        if self.max_rep_attempts < 1:
            raise ValueError("max_rep_attempts must be at least 1")
        for name in ("rep_answer_timeout", "lead_answer_timeout"):
            value = getattr(self, name)
            if not MIN_RING_TIMEOUT <= value <= MAX_RING_TIMEOUT:
                raise ValueError(f"{name} must be {MIN_RING_TIMEOUT}..{MAX_RING_TIMEOUT} seconds")
        if not MIN_WHISPER_TIMEOUT <= self.whisper_timeout <= MAX_WHISPER_TIMEOUT:
            raise ValueError(
                f"whisper_timeout must be {MIN_WHISPER_TIMEOUT}..{MAX_WHISPER_TIMEOUT} seconds"
            )
        if self.lead_retries < 0:
            raise ValueError("lead_retries must not be negative")
        if self.machine not in get_args(MachineBehaviour):
            raise ValueError(f"machine must be one of {get_args(MachineBehaviour)}")
        for name in ("lead_retry_delay", "watchdog_timeout", "max_call_duration"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")

    def greeting(self, *, lead_name: str | None, rep_name: str | None) -> str:
        """What the lead hears on answer."""
        return render(
            self.greeting_text,
            lead_name=lead_name,
            rep_name=rep_name,
            business_name=self.business_name,
        )

    def whisper(self, *, lead_name: str | None, source: str | None, answers: str | None) -> str:
        """What the rep hears before deciding to take the lead."""
        return render(
            self.whisper_text,
            lead_name=lead_name,
            source=source or "a lead source",
            answers=answers,
            business_name=self.business_name,
        )

    def fallback(self) -> str:
        """What the lead hears when no rep took the call."""
        return render(self.fallback_text, business_name=self.business_name)

    def voicemail(self, *, lead_name: str | None) -> str:
        """The message left on the lead's answering machine."""
        return render(self.voicemail_text, lead_name=lead_name, business_name=self.business_name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (timedeltas as seconds)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.total_seconds() if isinstance(value, timedelta) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        """Inverse of `to_json`; unknown keys are refused so a typo in a playbook is loud."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown party-line policy fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        defaults = cls()
        for name, value in data.items():
            default = getattr(defaults, name)
            if isinstance(default, timedelta):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} must be a number of seconds")
                values[name] = timedelta(seconds=float(value))
            elif type(value) is not type(default):
                # bool is an int subclass: compare exact types so `true` is no attempt count.
                raise ValueError(f"{name} must be a {type(default).__name__}")
            else:
                values[name] = value
        return replace(defaults, **values)
