"""Every Twilio webhook delivered twice, out of order and late: the final state is the same as
a clean run of the same scenario.

The sandbox itself misbehaves (twilio_sandbox/faults.py): it duplicates, reorders and delays
its inbound-SMS, SMS-status, call-status, AMD and conference callbacks, and asks the rep's
Gather action twice. The snapshot compared is the database's, by role (support_callbacks.py).
"""

from __future__ import annotations

import os

import pytest
from sqlmodel import select

from gateway.db import transaction
from gateway.models import Activity
from gateway.webhooks.addresses import set_private_allowed
from tests.reliability.support_callbacks import (
    Cast,
    publish_mortgage,
    run_scenario,
    snapshot,
)
from tests.support.party_line import publish_call_now
from tests.support.stack import Stack
from tests.support.webhook_endpoint import WebhookEndpoint, WebhookEndpointServer
from twilio_sandbox import CallbackFault

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

FULL = os.environ.get("RELIABILITY_FULL") == "1"
MANY = 1000  # "every one of this kind" for the faulted run


def faults(delay: float) -> list[CallbackFault]:
    """Duplicates of every callback, reorders and delays of each kind (a callback takes the
    first fault that matches it, so the reorders and delays come first, for a few each). The
    scenario's one AMD callback is made late (tests/e2e/test_party_line.py duplicates it)."""
    reordered = [
        CallbackFault("reorder", kind=kind, times=times, delay=delay)
        for kind, times in (("sms.status", 4), ("call.status", 3), ("conference.status", 3))
    ]
    delayed = [
        CallbackFault("delay", kind=kind, times=times, delay=delay)
        for kind, times in (
            ("sms.inbound", 2),
            ("sms.status", 3),
            ("call.status", 2),
            ("call.amd", 1),
            ("conference.status", 2),
        )
    ]
    duplicated = [
        CallbackFault("duplicate", kind=kind, times=MANY)
        for kind in (
            "sms.inbound",
            "sms.status",
            "call.status",
            "conference.status",
            "gather.action",
        )
    ]
    return reordered + delayed + duplicated


CLEAN = Cast("+14155550111", "+14155550112", "+14155550113", "+14155550181", "Clean")
FAULTED = Cast("+14155550121", "+14155550122", "+14155550123", "+14155550182", "Faulted")


@pytest.mark.parametrize("delay", [30.0, 200.0] if FULL else [30.0])
async def test_duplicated_reordered_late_callbacks_end_like_a_clean_run(
    stack: Stack, delay: float
) -> None:
    receiver = WebhookEndpoint()
    server = WebhookEndpointServer(receiver)
    server.start()
    try:
        async with transaction(stack.sessions) as session:
            await set_private_allowed(session, stack.account_id, True)
        hook = await stack.api.post("/v1/webhooks", json={"url": receiver.url + "/hook"})
        assert hook.status_code == 201, hook.text
        await publish_mortgage(stack)
        await publish_call_now(stack)

        clean_rep = await run_scenario(stack, CLEAN)
        clean = await snapshot(stack, CLEAN, clean_rep)
        clean_traffic = len(list(stack.sandbox.record))

        for fault in faults(delay):
            stack.sandbox.faults.add_callback(fault)
        faulted_rep = await run_scenario(stack, FAULTED)
        faulted = await snapshot(stack, FAULTED, faulted_rep)
    finally:
        server.stop()

    # The scenario did what it is for: a conversation to an outcome, an opt-out, a party line,
    # every activity delivered to the customer.
    [play_a] = clean["lead_a"]["plays"]
    assert play_a["play"][1:3] == ("has_outcome", "textback_requested")
    assert clean["lead_b"]["opt_outs"] and clean["lead_b"]["plays"][0]["play"][1] == "opted_out"
    [play_c] = clean["lead_c"]["plays"]
    assert play_c["party_lines"][0]["end_reason"] == "completed"
    assert all(d[1] == "delivered" for d in play_a["deliveries"] + play_c["deliveries"])
    assert len(play_a["deliveries"]) == len(play_a["activities"])

    # Every kind of fault was applied in the faulted run.
    applied = {(c.kind, c.fault) for c in list(stack.sandbox.record)[clean_traffic:]
               if hasattr(c, "fault") and c.fault}  # fmt: skip
    expected = {(f.kind, f.action) for f in faults(delay)}
    assert expected <= applied, expected - applied

    assert faulted == clean
    # Each activity of both runs reached the customer (plays' and the opt-outs' own), by its id.
    async with stack.sessions() as session:
        ids = set((await session.exec(select(Activity.public_id))).all())
    assert {body["id"] for body in receiver.bodies()} == ids
