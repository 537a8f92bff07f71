"""The facts a caller may leave out: where `uses_last_inbound` / `counts_contacts` say a fact
can't matter, the decision is the same with it and without it (gateway/gate.py relies on it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from typing import get_args

from compliance.gate import (
    Channel,
    GateRequest,
    Purpose,
    counts_contacts,
    decide,
    uses_last_inbound,
)

AT = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)  # noon in San Francisco, 15:00 in Florida
PHONES = ("+14155550123", "+13055550123")  # California (no cap), Florida (capped)
CONTACTS = tuple(AT - timedelta(hours=h) for h in (1, 2, 3))
LAST_INBOUND = AT - timedelta(minutes=5)


def test_a_fact_the_rules_cannot_use_changes_no_decision() -> None:
    checked = 0
    for channel, purpose, phone in product(get_args(Channel), get_args(Purpose), PHONES):
        bare = GateRequest(channel=channel, purpose=purpose, phone=phone, at=AT)
        if not counts_contacts(channel, purpose, phone, None, None):
            with_contacts = GateRequest(
                channel=channel, purpose=purpose, phone=phone, at=AT,
                initiated_contacts_last_24h=CONTACTS,
            )  # fmt: skip
            assert decide(with_contacts) == decide(bare)
            checked += 1
        if not uses_last_inbound(channel, purpose):
            with_inbound = GateRequest(
                channel=channel, purpose=purpose, phone=phone, at=AT, last_inbound_at=LAST_INBOUND
            )
            assert decide(with_inbound) == decide(bare)
            checked += 1
    assert checked > 0


def test_the_facts_that_can_matter_are_asked_for() -> None:
    florida, california = PHONES[1], PHONES[0]
    assert counts_contacts("sms", "initiated", florida, None, None)
    assert counts_contacts("call", "reply", florida, None, None)
    assert counts_contacts("sms", "initiated", california, "FL", None)  # the address counts
    assert not counts_contacts("sms", "initiated", california, None, None)
    assert uses_last_inbound("sms", "reply") and uses_last_inbound("call", "reply")
    capped = GateRequest(
        channel="sms",
        purpose="initiated",
        phone=florida,
        at=AT,
        initiated_contacts_last_24h=CONTACTS,
    )
    assert decide(capped).reason == "frequency_cap"
