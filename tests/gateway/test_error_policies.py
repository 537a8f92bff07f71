"""The Twilio error table, row by row: whose fault each code is decides what it may touch."""

from __future__ import annotations

import pytest

from gateway.models import PhoneStatus
from gateway.sms.errors import POLICIES, Action, policy_for

# Codes that are the lead's number's fault, and what they say about it (Twilio's error pages).
LEAD_NUMBER = {
    21211: PhoneStatus.INVALID,  # 'To' is not a valid phone number
    30005: PhoneStatus.INVALID,  # unknown or inactive destination
    21614: PhoneStatus.LANDLINE,  # 'To' is not a mobile number
    30006: PhoneStatus.LANDLINE,  # landline or unreachable carrier
}


@pytest.mark.parametrize("code", sorted(POLICIES))
def test_only_the_leads_own_faults_flag_the_leads_phone(code: int) -> None:
    policy = policy_for(code)
    assert policy.note, "every row says what the code means"
    if code in LEAD_NUMBER:
        assert (policy.action, policy.phone_status) == (Action.PERMANENT, LEAD_NUMBER[code])
    else:
        assert policy.phone_status is None
        assert policy.action != Action.PERMANENT


@pytest.mark.parametrize("code", [21606, 21661, 30032, 30034])
def test_a_refused_sender_is_the_accounts_set_up(code: int) -> None:
    assert policy_for(code).action == Action.SENDER


@pytest.mark.parametrize("code", [21408, 21608, 30002])
def test_account_set_up_errors_leave_the_lead_alone(code: int) -> None:
    assert policy_for(code).action == Action.ACCOUNT


def test_only_a_stop_at_twilio_is_an_opt_out() -> None:
    # 30004 ("message blocked") also covers carrier blocks and filtering: not the lead's STOP.
    assert [c for c, p in POLICIES.items() if p.action == Action.OPT_OUT] == [21610]


def test_codes_not_in_the_table() -> None:
    assert policy_for(None, 503).action == Action.RETRY
    assert policy_for(None, 429).action == Action.RETRY
    assert policy_for(12345, 400).action == Action.FAIL
