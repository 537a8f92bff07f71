"""An account's compliance settings: stored as JSON on the account, validated here."""

from __future__ import annotations

from datetime import time
from typing import Annotated, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from compliance.notice import has_opt_out_instruction
from compliance.window import Window
from gateway.models import Account

# CTIA: one confirmation, no marketing, says how to resubscribe; kept under one SMS segment.
DEFAULT_OPT_OUT_CONFIRMATION = (
    "{business}: you are unsubscribed and will get no more messages. Reply START to resubscribe."
)
# The same in Spanish, for a lead who opted out in Spanish ("parar", "baja", "no más").
DEFAULT_OPT_OUT_CONFIRMATION_ES = (
    "{business}: se ha dado de baja y no recibirá más mensajes. Responda START para volver."
)
DEFAULT_OPT_IN_CONFIRMATION = (
    "{business}: you are resubscribed. Msg&data rates may apply. Reply STOP to opt out."
)
DEFAULT_HELP_TEXT = (
    "{business}: for help contact {contact}. Msg&data rates may apply. Reply STOP to opt out."
)
# Appended to the first text a lead gets and to one text in every 30 days (gateway/sms/notice.py);
# it starts with a space because it is appended to the body as is.
DEFAULT_OPT_OUT_NOTICE = " Reply STOP to opt out."
# Purchased ("aged") leads are where TCPA suits come from: consent older than this blocks
# initiated texts and calls (compliance/consent.py). A source rule can set its own.
DEFAULT_MAX_CONSENT_AGE_DAYS = 90

# A wall-clock time of day without an offset ("08:00", "20:00:00"). JSON Schema's `format: time`
# (what pydantic says for `time`) is RFC 3339's full-time, which requires an offset, so the
# document would contradict every answer; the pattern says what is sent and accepted.
ClockTime = Annotated[
    time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
            "description": "local time of day, HH:MM or HH:MM:SS",
        }
    ),
]


class ComplianceSettings(BaseModel):
    """What an account may tune; the law's limits are enforced by `compliance/` regardless."""

    model_config = ConfigDict(extra="forbid")

    business_name: str | None = Field(default=None, max_length=100)
    help_contact: str | None = Field(
        default=None,
        max_length=100,
        description="how a lead reaches the business, for the HELP answer; unset: the number "
        "the lead texted and the postal address",
    )
    postal_address: str | None = Field(
        default=None,
        min_length=5,
        max_length=300,
        description="the business's postal address, printed in every playbook email (CAN-SPAM)",
    )
    opt_out_confirmation: str = Field(default=DEFAULT_OPT_OUT_CONFIRMATION, max_length=320)
    opt_out_confirmation_es: str = Field(
        default=DEFAULT_OPT_OUT_CONFIRMATION_ES,
        max_length=320,
        description="the confirmation for a lead who opted out in Spanish",
    )
    opt_in_confirmation: str = Field(default=DEFAULT_OPT_IN_CONFIRMATION, max_length=320)
    help_text: str = Field(default=DEFAULT_HELP_TEXT, max_length=320)
    timezone: str | None = Field(default=None, description="fallback zone for numbers without one")
    window_start: ClockTime = time(8, 0)
    window_end: ClockTime = time(20, 0)
    window_days: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4, 5, 6), min_length=1)
    reply_grace: bool = True
    # Twilio answers its default keywords itself on long codes and toll-free numbers (and then
    # refuses sends with 21610); the gateway then records them but sends no second reply. Turn
    # off only when the Twilio account's default handling is off (Advanced Opt-Out, no keywords).
    twilio_answers_default_keywords: bool = True
    opt_out_notice: str = Field(
        default=DEFAULT_OPT_OUT_NOTICE,
        min_length=1,
        max_length=120,
        description="appended to the first text and one text in every 30 days",
    )
    max_consent_age_days: int | None = Field(
        default=DEFAULT_MAX_CONSENT_AGE_DAYS,
        ge=1,
        le=3650,
        description="initiated texts and calls need consent at most this old; null: no limit",
    )
    require_consent: bool = Field(
        default=False, description="block initiated texts and calls to leads without consent"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("window_days")
    @classmethod
    def _days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(day not in range(7) for day in value):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return tuple(sorted(set(value)))

    @field_validator("opt_out_notice")
    @classmethod
    def _notice_says_how(cls, value: str) -> str:
        if not has_opt_out_instruction(value):
            raise ValueError('the notice must tell how to opt out, e.g. " Reply STOP to opt out."')
        return value

    @model_validator(mode="after")
    def _legal_window(self) -> ComplianceSettings:
        self.window()  # an account may narrow the window, never widen it past the law
        return self

    def window(self) -> Window:
        return Window(
            start=self.window_start, end=self.window_end, days=frozenset(self.window_days)
        )


def compliance_settings(account: Account) -> ComplianceSettings:
    return ComplianceSettings.model_validate(account.compliance or {})


class TwilioOptOutHandling(TypedDict):
    """Twilio's default opt-out handling on a number, as the built-in sandbox's switches
    (`Sandbox.add_number` and `set_opt_out_handling`; None: the sandbox's default, Twilio's)."""

    keyword_replies: bool | None
    stop_filtering: bool | None


def twilio_opt_out_handling(settings: ComplianceSettings) -> TwilioOptOutHandling:
    """What the built-in sandbox must do on the account's numbers so that a lead gets one
    confirmation: Twilio's default handling while the account says Twilio answers the keywords,
    none at all (no replies, no STOP list) once it says Twilio's handling is off and the gateway
    answers itself."""
    if settings.twilio_answers_default_keywords:
        return TwilioOptOutHandling(keyword_replies=None, stop_filtering=None)
    return TwilioOptOutHandling(keyword_replies=False, stop_filtering=False)


def fallback_contact(
    account: Account, settings: ComplianceSettings, number: str | None = None
) -> str:
    """How to reach the business while `help_contact` is unset: its name with the number the
    lead texted and its postal address, whichever are known (CTIA: HELP names a contact)."""
    business = settings.business_name or account.name
    ways = [way for way in (number, settings.postal_address) if way]
    return f"{business} ({' or '.join(ways)})" if ways else business


def render(
    template: str, account: Account, settings: ComplianceSettings, *, number: str | None = None
) -> str:
    """Fill `{business}` and `{contact}` in a confirmation or help template.

    `number`: our number the lead texted, named in `{contact}` while `help_contact` is unset."""
    business = settings.business_name or account.name
    contact = settings.help_contact or fallback_contact(account, settings, number)
    return template.replace("{business}", business).replace("{contact}", contact)
