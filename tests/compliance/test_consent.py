"""Consent age in the gate: initiated texts and calls need consent younger than the limit;
replies, confirmations and email don't; no evidence is allowed unless the account requires it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compliance import consent, gate
from compliance.gate import GateRequest, decide

SF = "+14155550123"
NOON_PACIFIC = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)  # Wednesday 12:00 PST
DAY = timedelta(days=1)
LIMIT_90 = timedelta(days=90)


def request(**overrides: Any) -> GateRequest:
    fields: dict[str, Any] = {
        "channel": "sms",
        "purpose": "initiated",
        "phone": SF,
        "at": NOON_PACIFIC,
        "max_consent_age": LIMIT_90,
    }
    fields.update(overrides)
    return GateRequest(**fields)


@pytest.mark.parametrize("channel", ["sms", "call"])
def test_consent_91_days_old_is_blocked(channel: str) -> None:
    decision = decide(request(channel=channel, consent_captured_at=NOON_PACIFIC - 91 * DAY))
    assert decision.action == "block"
    assert decision.reason == gate.CONSENT_EXPIRED == "consent_expired"
    assert decision.detail == ("consent captured 2026-08-19 is 91 days old; the limit is 90 days")
    assert decision.consent_evidence is True


@pytest.mark.parametrize("channel", ["sms", "call"])
def test_consent_89_days_old_is_allowed(channel: str) -> None:
    decision = decide(request(channel=channel, consent_captured_at=NOON_PACIFIC - 89 * DAY))
    assert decision.action == "allow"
    assert decision.reason == gate.ALLOWED


def test_consent_exactly_90_days_old_is_still_allowed_a_second_later_not() -> None:
    captured = NOON_PACIFIC - LIMIT_90
    assert decide(request(consent_captured_at=captured)).action == "allow"
    later = decide(request(consent_captured_at=captured, at=NOON_PACIFIC + timedelta(seconds=1)))
    assert later.reason == "consent_expired"


def test_issue_example_120_days_with_the_90_day_rule() -> None:
    decision = decide(request(consent_captured_at=NOON_PACIFIC - 120 * DAY))
    assert (decision.action, decision.reason) == ("block", "consent_expired")


def test_no_limit_allows_any_age() -> None:
    old = NOON_PACIFIC - 3000 * DAY
    assert decide(request(consent_captured_at=old, max_consent_age=None)).action == "allow"


def test_a_longer_limit_allows_what_90_days_blocks() -> None:
    captured = NOON_PACIFIC - 120 * DAY
    assert decide(request(consent_captured_at=captured)).action == "block"
    relaxed = decide(request(consent_captured_at=captured, max_consent_age=180 * DAY))
    assert relaxed.action == "allow"


@pytest.mark.parametrize("purpose", ["reply", "confirmation"])
def test_replies_and_confirmations_are_not_checked(purpose: str) -> None:
    decision = decide(
        request(
            purpose=purpose,
            consent_captured_at=NOON_PACIFIC - 400 * DAY,
            require_consent=True,
            last_inbound_at=NOON_PACIFIC - timedelta(minutes=2),
        )
    )
    assert decision.action == "allow"
    assert decision.consent_evidence is None  # the rule did not apply


def test_email_is_not_affected() -> None:
    expired = decide(request(channel="email", consent_captured_at=NOON_PACIFIC - 400 * DAY))
    assert (expired.action, expired.reason) == ("allow", gate.EMAIL_NOT_TIME_RESTRICTED)
    missing = decide(request(channel="email", require_consent=True))
    assert missing.action == "allow"
    assert missing.consent_evidence is None


def test_no_evidence_is_allowed_by_default_and_says_so() -> None:
    decision = decide(request())
    assert decision.action == "allow"
    assert decision.consent_evidence is False


@pytest.mark.parametrize("channel", ["sms", "call"])
def test_no_evidence_is_blocked_when_the_account_requires_consent(channel: str) -> None:
    decision = decide(request(channel=channel, require_consent=True))
    assert (decision.action, decision.reason) == ("block", gate.CONSENT_MISSING)
    assert decision.consent_evidence is False


def test_require_consent_with_fresh_evidence_allows() -> None:
    decision = decide(request(require_consent=True, consent_captured_at=NOON_PACIFIC - 5 * DAY))
    assert decision.action == "allow"
    assert decision.consent_evidence is True


def test_opt_out_wins_over_consent() -> None:
    decision = decide(request(opted_out=True, consent_captured_at=NOON_PACIFIC - 400 * DAY))
    assert decision.reason == gate.OPTED_OUT


def test_consent_expiring_while_deferred_blocks_now() -> None:
    """At 22:00 the text would wait for 08:00; consent 89.9 days old is expired by then."""
    night = datetime(2026, 11, 19, 6, 0, tzinfo=UTC)  # Wednesday 22:00 PST
    captured = night - LIMIT_90 + timedelta(hours=2)
    decision = decide(request(at=night, consent_captured_at=captured))
    assert (decision.action, decision.reason) == ("block", "consent_expired")


def test_consent_captured_at_must_be_aware() -> None:
    with pytest.raises(ValueError):
        request(consent_captured_at=datetime(2026, 11, 1, 12, 0))


def test_check_reports_age_in_days() -> None:
    result = consent.check(NOON_PACIFIC - 100 * DAY, NOON_PACIFIC, max_age=LIMIT_90)
    assert not result.ok and "100 days old" in result.detail and "90 days" in result.detail
