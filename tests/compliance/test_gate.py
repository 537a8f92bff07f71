"""The gate's decision for SMS, calls and email, rule by rule, with concrete instants."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from compliance import gate
from compliance.gate import GateRequest, Verdict, decide

NY = "+12125550123"
DALLAS = "+12145550123"
MIAMI = "+13055550123"
JACKSON = "+16015550123"
TOLL_FREE = "+18005550123"

NOON_EDT = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # Monday 12:00 in New York
NIGHT_EDT = datetime(2026, 6, 2, 2, 0, tzinfo=UTC)  # Monday 22:00 in New York
NEXT_MORNING_EDT = datetime(2026, 6, 2, 12, 0, tzinfo=UTC)  # Tuesday 08:00
M = timedelta(minutes=1)
H = timedelta(hours=1)


def request(**overrides: Any) -> GateRequest:
    fields: dict[str, Any] = {
        "channel": "sms",
        "purpose": "initiated",
        "phone": NY,
        "at": NOON_EDT,
    }
    fields.update(overrides)
    return GateRequest(**fields)


# ---- allow -----------------------------------------------------------------------


def test_initiated_sms_inside_the_window_gets_a_validity_period() -> None:
    decision = decide(request(at=datetime(2026, 6, 1, 23, 0, tzinfo=UTC)))  # 19:00 EDT
    assert decision.action == "allow"
    assert decision.reason == gate.ALLOWED
    assert decision.zones == ("America/New_York",)
    assert decision.validity_period == 3600  # until 20:00 EDT
    assert decision.until is None


def test_validity_period_is_clamped_to_twilio_bounds() -> None:
    morning = decide(request(at=NEXT_MORNING_EDT))  # 12 hours left
    assert morning.validity_period == 36_000
    last_second = decide(request(at=datetime(2026, 6, 1, 23, 59, 59, 500_000, tzinfo=UTC)))
    assert last_second.validity_period == 1


def test_calls_have_no_validity_period() -> None:
    decision = decide(request(channel="call"))
    assert decision.action == "allow"
    assert decision.validity_period is None


# ---- confirmations and opt-out -------------------------------------------------------


def test_confirmations_always_go_out() -> None:
    decision = decide(
        request(purpose="confirmation", opted_out=True, at=NIGHT_EDT, phone=TOLL_FREE)
    )
    assert decision.action == "allow"
    assert decision.reason == gate.CONFIRMATION


@pytest.mark.parametrize("channel", ["sms", "call", "email"])
def test_opted_out_blocks(channel: str) -> None:
    decision = decide(request(channel=channel, opted_out=True))
    assert decision.action == "block"
    assert decision.reason == gate.OPTED_OUT


def test_email_may_continue_after_opt_out_when_the_account_says_so() -> None:
    decision = decide(request(channel="email", opted_out=True, email_continues_after_opt_out=True))
    assert decision.action == "allow"
    # ...but never SMS or calls
    assert decide(request(opted_out=True, email_continues_after_opt_out=True)).action == "block"


def test_email_ignores_quiet_hours_caps_and_unknown_zones() -> None:
    decision = decide(
        request(
            channel="email",
            at=NIGHT_EDT,
            phone=TOLL_FREE,
            initiated_contacts_last_24h=[NIGHT_EDT - H] * 5,
            state="FL",
        )
    )
    assert decision.action == "allow"
    assert decision.reason == gate.EMAIL_NOT_TIME_RESTRICTED


# ---- quiet hours and state rules ----------------------------------------------------


@pytest.mark.parametrize("channel", ["sms", "call"])
def test_quiet_hours_defer_to_the_next_morning(channel: str) -> None:
    decision = decide(request(channel=channel, at=NIGHT_EDT))
    assert decision.action == "defer"
    assert decision.reason == gate.QUIET_HOURS
    assert decision.until == NEXT_MORNING_EDT
    assert decision.validity_period is None


def test_texas_sunday_morning_defers_with_the_state_reason() -> None:
    at = datetime(2026, 6, 7, 16, 30, tzinfo=UTC)  # Sun 11:30 CDT
    decision = decide(request(phone=DALLAS, at=at))
    assert decision.action == "defer"
    assert decision.reason == "state_rule:TX"
    assert decision.until == datetime(2026, 6, 7, 17, 0, tzinfo=UTC)


def test_unknown_time_zone_blocks() -> None:
    decision = decide(request(phone=TOLL_FREE))
    assert decision.action == "block"
    assert decision.reason == gate.TIME_ZONE_UNKNOWN
    assert decide(request(phone=TOLL_FREE, fallback_tz="America/New_York")).action == "allow"


def test_nothing_within_14_days_blocks() -> None:
    sundays_only = gate.Window(days=frozenset({6}))
    decision = decide(request(phone=JACKSON, window=sundays_only))  # Mississippi: no Sundays
    assert decision.action == "block"
    assert decision.reason == gate.NO_CONTACT_WINDOW


# ---- reply grace -----------------------------------------------------------------


def test_reply_within_15_minutes_of_the_lead_is_allowed_at_night() -> None:
    decision = decide(request(purpose="reply", at=NIGHT_EDT, last_inbound_at=NIGHT_EDT - 15 * M))
    assert decision.action == "allow"
    assert decision.reason == gate.REPLY_GRACE


def test_reply_after_the_grace_period_waits_for_the_window() -> None:
    late = decide(request(purpose="reply", at=NIGHT_EDT, last_inbound_at=NIGHT_EDT - 16 * M))
    assert late.action == "defer"
    assert late.until == NEXT_MORNING_EDT


def test_reply_grace_can_be_disabled() -> None:
    decision = decide(
        request(
            purpose="reply",
            at=NIGHT_EDT,
            last_inbound_at=NIGHT_EDT - M,
            reply_grace_enabled=False,
        )
    )
    assert decision.action == "defer"
    assert decision.reason == gate.QUIET_HOURS


def test_grace_does_not_apply_to_initiated_messages() -> None:
    decision = decide(request(at=NIGHT_EDT, last_inbound_at=NIGHT_EDT - M))
    assert decision.action == "defer"


# ---- frequency cap ---------------------------------------------------------------


AT_FL = datetime(2026, 6, 2, 14, 0, tzinfo=UTC)  # Tue 10:00 EDT in Miami


def test_frequency_cap_defers_until_the_oldest_contact_expires() -> None:
    contacts = [datetime(2026, 6, 1, 23, 30, tzinfo=UTC), AT_FL - 60 * M, AT_FL - 30 * M]
    decision = decide(request(phone=MIAMI, at=AT_FL, initiated_contacts_last_24h=contacts))
    assert decision.action == "defer"
    assert decision.reason == gate.FREQUENCY_CAP
    assert decision.until == datetime(2026, 6, 2, 23, 30, tzinfo=UTC)  # 19:30 EDT


def test_frequency_cap_then_quiet_hours_until_is_when_both_allow() -> None:
    # the oldest expires at 21:00 EDT, after the window: wait for 08:00 the next day
    contacts = [datetime(2026, 6, 2, 1, 0, tzinfo=UTC), AT_FL - 60 * M, AT_FL - 30 * M]
    decision = decide(request(phone=MIAMI, at=AT_FL, initiated_contacts_last_24h=contacts))
    assert decision.action == "defer"
    assert decision.reason == gate.FREQUENCY_CAP
    assert decision.until == datetime(2026, 6, 3, 12, 0, tzinfo=UTC)


def test_cap_applies_by_the_address_state_too() -> None:
    contacts = [AT_FL - 3 * H, AT_FL - 2 * H, AT_FL - H]
    assert decide(request(at=AT_FL, initiated_contacts_last_24h=contacts)).action == "allow"
    decision = decide(request(at=AT_FL, initiated_contacts_last_24h=contacts, state="MD"))
    assert decision.reason == gate.FREQUENCY_CAP


def test_replies_in_a_live_conversation_are_not_capped() -> None:
    contacts = [AT_FL - 3 * H, AT_FL - 2 * H, AT_FL - H]
    live = decide(
        request(
            phone=MIAMI,
            purpose="reply",
            at=AT_FL,
            initiated_contacts_last_24h=contacts,
            last_inbound_at=AT_FL - 2 * H,
        )
    )
    assert live.action == "allow"
    stale = decide(
        request(
            phone=MIAMI,
            purpose="reply",
            at=AT_FL,
            initiated_contacts_last_24h=contacts,
            last_inbound_at=AT_FL - 30 * H,
        )
    )
    assert stale.reason == gate.FREQUENCY_CAP


# ---- validation and extension --------------------------------------------------------


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        request(at=datetime(2026, 6, 1, 12))
    with pytest.raises(ValueError, match="channel"):
        request(channel="fax")
    with pytest.raises(ValueError, match="purpose"):
        request(purpose="marketing")
    with pytest.raises(ValueError, match="timezone-aware"):
        request(last_inbound_at=datetime(2026, 6, 1, 12))


def test_a_new_rule_is_one_function() -> None:
    def consent_rule(req: GateRequest, at: datetime) -> Verdict:
        return Verdict("block", "consent_expired")

    rules = (*gate.RULES[:2], consent_rule, *gate.RULES[2:])
    assert decide(request(), rules).reason == "consent_expired"
    assert decide(request(purpose="confirmation"), rules).action == "allow"


def test_decisions_are_frozen() -> None:
    decision = decide(request())
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.action = "block"  # type: ignore[misc]
