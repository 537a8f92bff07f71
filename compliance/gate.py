"""The gate's pure decision: may this SMS, call or email leave now?

Every send passes through `decide` at the moment it is sent. The answer is
"allow", "defer" (until a UTC instant; the caller reschedules the work there,
deferred work is never dropped) or "block" (never send this).

The decision is a pipeline of rules (RULES), each looking at the request at an
instant and returning a Verdict: pass, allow (final), block (final) or defer
until some instant. A deferral is re-checked at its instant against all rules
until every rule passes, so `until` is a time when the send will be allowed,
not merely when the first obstacle is gone. A new rule is one function in RULES;
`consent_rule` (reasons "consent_expired" and "consent_missing", see compliance/consent.py)
is one.

Quiet hours, state rules and frequency caps apply to calls and texts only:
the TCPA (47 CFR 64.1200(c)(1)) and the state telemarketing statutes regulate
telephone calls and text messages; email is governed by CAN-SPAM, which has no
time-of-day or frequency rule, so email is only stopped by an opt-out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from compliance import consent, frequency, quiet_hours
from compliance.quiet_hours import require_aware
from compliance.window import DEFAULT_WINDOW, LEGAL_END, LEGAL_START, Window
from compliance.zones import applicable_states, area_code_state, candidate_zones

__all__ = [
    "DEFAULT_WINDOW",
    "LEGAL_END",
    "LEGAL_START",
    "RULES",
    "GateDecision",
    "GateRequest",
    "Verdict",
    "Window",
    "applicable_states",
    "area_code_state",
    "candidate_zones",
    "counts_contacts",
    "decide",
    "uses_last_inbound",
]

Channel = Literal["sms", "call", "email"]
# "staff": a notice to the business's own rep (a lead was assigned to them); see `staff_rule`.
Purpose = Literal["initiated", "reply", "confirmation", "staff"]
Action = Literal["allow", "defer", "block"]

# Stable machine reasons (GateDecision.reason). State rules add "state_rule:<XX>".
ALLOWED = "allowed"
CONFIRMATION = "confirmation"
REPLY_GRACE = "reply_grace"
EMAIL_NOT_TIME_RESTRICTED = "email_not_time_restricted"
OPTED_OUT = "opted_out"
STAFF_NOTICE = "staff_notice"
QUIET_HOURS = quiet_hours.QUIET_HOURS
TIME_ZONE_UNKNOWN = quiet_hours.TIME_ZONE_UNKNOWN
NO_CONTACT_WINDOW = quiet_hours.NO_CONTACT_WINDOW
FREQUENCY_CAP = frequency.FREQUENCY_CAP
CONSENT_EXPIRED = consent.CONSENT_EXPIRED
CONSENT_MISSING = consent.CONSENT_MISSING
STATE_RULE_PREFIX = "state_rule:"

REPLY_GRACE_PERIOD = timedelta(minutes=15)
CONVERSATION_PERIOD = timedelta(hours=24)  # a reply this soon after the lead's message isn't capped
VALIDITY_MIN, VALIDITY_MAX = 1, 36_000  # Twilio ValidityPeriod bounds, seconds (error 21624)
MAX_RECHECKS = 32  # rules that keep pushing `until` forward: give up and block


@dataclass(frozen=True)
class GateRequest:
    """One send about to happen (see the module doc for the meaning of each rule)."""

    channel: Channel
    purpose: Purpose
    phone: str
    at: datetime
    opted_out: bool = False
    email_continues_after_opt_out: bool = False
    # The address followed an email's unsubscribe link: no email, whatever the texts' status.
    email_unsubscribed: bool = False
    state: str | None = None
    postal_code: str | None = None
    fallback_tz: str | None = None
    window: Window | None = None
    initiated_contacts_last_24h: Sequence[datetime] = ()
    last_inbound_at: datetime | None = None
    reply_grace_enabled: bool = True
    # Latest consent evidence of the lead (None: none on record); max_consent_age None: no limit.
    consent_captured_at: datetime | None = None
    max_consent_age: timedelta | None = None
    require_consent: bool = False

    def __post_init__(self) -> None:
        if self.channel not in get_args(Channel):
            raise ValueError(f"unknown channel {self.channel!r}")
        if self.purpose not in get_args(Purpose):
            raise ValueError(f"unknown purpose {self.purpose!r}")
        require_aware(self.at)
        if self.last_inbound_at is not None:
            require_aware(self.last_inbound_at)
        if self.consent_captured_at is not None:
            require_aware(self.consent_captured_at)


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer. `until` (UTC) is set for "defer" only.

    `validity_period` is the Twilio ValidityPeriod (seconds) for an allowed
    SMS that was checked against quiet hours: the time left until the window
    closes, so a message stuck in Twilio's queue expires instead of arriving
    late.

    `consent_evidence` is False when the consent rule applied and the lead has no consent
    evidence (the gateway records that the play ran without it), None when it did not apply.
    """

    action: Action
    reason: str
    until: datetime | None = None
    zones: tuple[str, ...] = ()
    validity_period: int | None = None
    detail: str = ""
    consent_evidence: bool | None = None


@dataclass(frozen=True)
class Verdict:
    """One rule's view of a request at an instant."""

    action: Literal["pass", "allow", "block", "defer"]
    reason: str = ""
    until: datetime | None = None
    detail: str = ""
    zones: tuple[str, ...] = ()
    open_until: datetime | None = None


PASS = Verdict("pass")
Rule = Callable[[GateRequest, datetime], Verdict]


def confirmation_rule(request: GateRequest, at: datetime) -> Verdict:
    """Opt-out/opt-in/help confirmations always go out (carriers and the law expect them)."""
    if request.purpose == "confirmation":
        return Verdict("allow", CONFIRMATION, detail="confirmation messages are always sent")
    return PASS


def opt_out_rule(request: GateRequest, at: datetime) -> Verdict:
    """An opted-out lead gets no SMS or call; email only if the account keeps emailing, and
    never to an address that unsubscribed from the account's email."""
    if request.channel == "email" and request.email_unsubscribed:
        return Verdict("block", OPTED_OUT, detail="the address unsubscribed from email")
    if not request.opted_out:
        return PASS
    if request.channel == "email" and request.email_continues_after_opt_out:
        return PASS
    return Verdict("block", OPTED_OUT, detail="the lead opted out")


def staff_rule(request: GateRequest, at: datetime) -> Verdict:
    """A notice to the business's own rep goes out at any hour, uncapped, without consent
    evidence: quiet hours, state rules and caps protect consumers from telemarketing, and a rep
    is staff being told about their work. Their own opt-out (checked just before) still counts."""
    if request.purpose == "staff":
        return Verdict("allow", STAFF_NOTICE, detail="a notice to the account's own rep")
    return PASS


def email_rule(request: GateRequest, at: datetime) -> Verdict:
    """Email has no quiet hours or caps (see the module doc)."""
    if request.channel == "email":
        return Verdict("allow", EMAIL_NOT_TIME_RESTRICTED, detail="email has no quiet hours")
    return PASS


def consent_rule(request: GateRequest, at: datetime) -> Verdict:
    """Initiated texts and calls need consent younger than the account's (or source's) limit."""
    if not consent.applies(request.channel, request.purpose):
        return PASS
    result = consent.check(
        request.consent_captured_at,
        at,
        max_age=request.max_consent_age,
        require=request.require_consent,
    )
    if result.ok:
        return PASS
    return Verdict("block", result.reason, detail=result.detail)


def reply_grace_rule(request: GateRequest, at: datetime) -> Verdict:
    """A reply within 15 minutes of the lead's own message may go out at any hour."""
    if (
        request.purpose == "reply"
        and request.reply_grace_enabled
        and request.last_inbound_at is not None
        and request.last_inbound_at >= at - REPLY_GRACE_PERIOD
    ):
        return Verdict("allow", REPLY_GRACE, detail="reply within 15 minutes of the lead")
    return PASS


def quiet_hours_rule(request: GateRequest, at: datetime) -> Verdict:
    """Window and state rules in every candidate zone of the lead."""
    decision = quiet_hours.check(
        request.phone,
        at,
        state=request.state,
        postal_code=request.postal_code,
        fallback_tz=request.fallback_tz,
        window=request.window,
    )
    if decision.allowed:
        return Verdict("pass", zones=decision.zones, open_until=decision.open_until)
    if decision.next_allowed_at is None:
        return Verdict("block", decision.code, detail=decision.reason, zones=decision.zones)
    return Verdict(
        "defer",
        decision.code,
        until=decision.next_allowed_at,
        detail=decision.reason,
        zones=decision.zones,
    )


def _counts_toward_cap(request: GateRequest, at: datetime) -> bool:
    if request.purpose == "initiated":
        return True
    # A "reply" to a conversation the lead has not continued for a day is,
    # for the cap, a new contact.
    inbound = request.last_inbound_at
    return inbound is None or inbound < at - CONVERSATION_PERIOD


def frequency_rule(request: GateRequest, at: datetime) -> Verdict:
    """At most 3 initiated contacts per rolling 24 hours in FL, OK and MD."""
    if not _counts_toward_cap(request, at):
        return PASS
    states = applicable_states(request.phone, request.state, request.postal_code)
    decision = frequency.cap_check(states, request.initiated_contacts_last_24h, at)
    if decision.allowed:
        return PASS
    return Verdict("defer", FREQUENCY_CAP, until=decision.next_allowed_at, detail=decision.reason)


def uses_last_inbound(channel: Channel, purpose: Purpose) -> bool:
    """Whether the lead's last message can change the decision (so a caller need not look it
    up otherwise): only a reply's text or call weighs it, for the grace and for the cap; email,
    confirmations and staff notices are decided before, an initiated contact never asks."""
    return channel != "email" and purpose == "reply"


def counts_contacts(
    channel: Channel, purpose: Purpose, phone: str, state: str | None, postal_code: str | None
) -> bool:
    """Whether the contacts of the last 24 hours can change the decision: a text or call that
    may count toward a cap, to a lead in a state that has one."""
    if channel == "email" or purpose not in ("initiated", "reply"):
        return False
    return bool(frequency.caps_for(applicable_states(phone, state, postal_code)))


# Order matters: final allows (confirmation) come before blocks (opt-out), and
# cheap rules before the quiet-hours computation.
RULES: tuple[Rule, ...] = (
    confirmation_rule,
    opt_out_rule,
    staff_rule,
    email_rule,
    consent_rule,
    reply_grace_rule,
    quiet_hours_rule,
    frequency_rule,
)


def _run(request: GateRequest, at: datetime, rules: Sequence[Rule]) -> tuple[Verdict, Verdict]:
    """First non-pass verdict (or a final allow) and the quiet-hours pass it saw."""
    seen = PASS
    for rule in rules:
        verdict = rule(request, at)
        if verdict.action == "pass":
            if verdict.zones:
                seen = verdict
            continue
        return verdict, seen
    return Verdict("allow", ALLOWED), seen


def _validity(request: GateRequest, at: datetime, open_until: datetime | None) -> int | None:
    if request.channel != "sms" or open_until is None:
        return None
    seconds = int((open_until - at).total_seconds())
    return max(VALIDITY_MIN, min(VALIDITY_MAX, seconds))


def decide(request: GateRequest, rules: Sequence[Rule] = RULES) -> GateDecision:
    """Allow, defer or block one send (see the module doc)."""
    decision = _decide(request, rules)
    if consent.applies(request.channel, request.purpose):
        decision = replace(decision, consent_evidence=request.consent_captured_at is not None)
    return decision


def _decide(request: GateRequest, rules: Sequence[Rule]) -> GateDecision:
    at = require_aware(request.at)
    verdict, seen = _run(request, at, rules)
    zones = verdict.zones or seen.zones
    if verdict.action == "allow":
        return GateDecision(
            "allow",
            verdict.reason,
            zones=zones,
            validity_period=_validity(request, at, seen.open_until),
            detail=verdict.detail,
        )
    if verdict.action == "block" or verdict.until is None:
        return GateDecision("block", verdict.reason, zones=zones, detail=verdict.detail)

    until = verdict.until
    for _ in range(MAX_RECHECKS):
        if until - at > quiet_hours.HORIZON:
            break
        later, _seen = _run(request, until, rules)
        if later.action == "allow":
            return GateDecision(
                "defer", verdict.reason, until=until, zones=zones, detail=verdict.detail
            )
        if later.action == "block" or later.until is None or later.until <= until:
            return GateDecision("block", later.reason, zones=zones, detail=later.detail)
        until = later.until
    return GateDecision(
        "block",
        NO_CONTACT_WINDOW,
        zones=zones,
        detail=f"{verdict.detail}; no allowed time within {quiet_hours.HORIZON.days} days",
    )
