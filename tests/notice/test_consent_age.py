"""Consent age end to end: a lead posted with consent evidence, its source rule's play, the gate
at send time, and what the play, its activities and the message row show."""

from __future__ import annotations

import httpx

from gateway import accounts, gate
from gateway.db import transaction
from gateway.models import Account
from tests.notice.conftest import (
    activities,
    bodies_to,
    lead_from,
    play_log,
    play_messages,
    publish_hello,
    send_text,
    source_rule,
)
from tests.support.stack import LEAD, Stack

HELLO_WITH_NOTICE = "Hi Ann, your quote is ready. Reply STOP to opt out."


async def _blocked_by_consent(stack: Stack, play_id: str, reason: str) -> None:
    """Nothing reached Twilio; the message, the play, its log and its activity say why."""
    assert stack.creates(To=LEAD) == []
    [message] = await play_messages(stack, play_id)
    assert (message.status, message.gate_reason) == ("blocked", reason)
    shown = (await stack.api.get(f"/v1/plays/{play_id}")).json()
    assert shown["state"] == "stopped"
    [stopped] = [a for a in shown["activities"] if a["label"] == "stopped"]
    assert stopped["note"].startswith(f"{reason}: ")
    [blocked] = [e for e in await play_log(stack, play_id) if e.kind == "blocked"]
    assert blocked.detail["reason"] == reason and blocked.detail["message_id"] == message.id


async def test_consent_91_days_old_is_blocked(stack: Stack) -> None:
    await publish_hello(stack)
    await source_rule(stack, "AgedLeadsCo")
    play_id = await lead_from(stack, "AgedLeadsCo", consent_days=91)
    await _blocked_by_consent(stack, play_id, "consent_expired")
    [stopped] = [a for a in await activities(stack, play_id) if a.label == "stopped"]
    assert stopped.note is not None and "91 days old; the limit is 90 days" in stopped.note


async def test_consent_89_days_old_is_texted(stack: Stack) -> None:
    await publish_hello(stack)
    await source_rule(stack, "AgedLeadsCo")
    play_id = await lead_from(stack, "AgedLeadsCo", consent_days=89)
    assert bodies_to(stack) == [HELLO_WITH_NOTICE]
    assert "started" in [a.label for a in await activities(stack, play_id)]
    assert "no_consent_evidence" not in [e.kind for e in await play_log(stack, play_id)]


async def test_120_days_from_a_source_with_the_90_day_rule(stack: Stack) -> None:
    await publish_hello(stack)
    await source_rule(stack, "EverQuote", max_consent_age_days=90)
    play_id = await lead_from(stack, "EverQuote", consent_days=120)
    await _blocked_by_consent(stack, play_id, "consent_expired")


async def test_a_source_rule_overrides_the_account_limit(stack: Stack) -> None:
    await publish_hello(stack)
    await source_rule(stack, "OwnWebForm", max_consent_age_days=180)
    await source_rule(stack, "StrictVendor", max_consent_age_days=30)
    await source_rule(stack, "NoLimit", max_consent_age_days=0)
    relaxed = await lead_from(stack, "OwnWebForm", consent_days=120)
    strict = await lead_from(stack, "StrictVendor", consent_days=45, phone="+14155550124")
    unlimited = await lead_from(stack, "NoLimit", consent_days=1000, phone="+14155550125")
    assert [m.status for m in await play_messages(stack, relaxed)] == ["delivered"]
    [blocked] = await play_messages(stack, strict)
    assert blocked.gate_reason == "consent_expired"
    assert [m.status for m in await play_messages(stack, unlimited)] == ["delivered"]


async def test_the_account_limit_applies_without_a_source_rule(stack: Stack) -> None:
    patched = await stack.api.patch(
        "/v1/account", json={"compliance": {"max_consent_age_days": 30}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["compliance"]["max_consent_age_days"] == 30
    await publish_hello(stack)
    await source_rule(stack, "Vendor")  # no limit of its own: the account's 30 days apply
    play_id = await lead_from(stack, "Vendor", consent_days=45)
    await _blocked_by_consent(stack, play_id, "consent_expired")
    # A manual text outside any play is blocked at once, with the same reason.
    created = await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "Hi Ann!"})
    assert (created.json()["status"], created.json()["gate_reason"]) == (
        "blocked",
        "consent_expired",
    )


async def test_without_evidence_the_play_runs_and_records_it(stack: Stack) -> None:
    await publish_hello(stack)
    await source_rule(stack, "Vendor")
    play_id = await lead_from(stack, "Vendor", consent_days=None)
    assert bodies_to(stack) == [HELLO_WITH_NOTICE]
    kinds = [e.kind for e in await play_log(stack, play_id)]
    assert kinds.count("no_consent_evidence") == 1


async def test_require_consent_blocks_leads_without_evidence(stack: Stack) -> None:
    patched = await stack.api.patch("/v1/account", json={"compliance": {"require_consent": True}})
    assert patched.status_code == 200, patched.text
    await publish_hello(stack)
    await source_rule(stack, "Vendor")
    play_id = await lead_from(stack, "Vendor", consent_days=None)
    await _blocked_by_consent(stack, play_id, "consent_missing")
    # With fresh evidence the same account texts.
    fresh = await lead_from(stack, "Vendor", consent_days=2, phone="+14155550124")
    assert [m.status for m in await play_messages(stack, fresh)] == ["delivered"]


async def test_replies_to_the_lead_are_not_held_to_consent_age(stack: Stack) -> None:
    """The lead texting us is newer evidence than any form: a reply goes out."""
    await publish_hello(stack)
    await source_rule(stack, "AgedLeadsCo")
    await lead_from(stack, "AgedLeadsCo", consent_days=200)
    stack.sandbox.send_sms(LEAD, "+14155550100", "hi, is this about my quote?")
    await stack.sandbox.settle()
    await stack.work()
    reply = await send_text(stack, "Yes! Want the numbers?")
    assert (reply.purpose, reply.status) == ("reply", "delivered")


async def test_calls_are_blocked_and_email_is_not(stack: Stack) -> None:
    await publish_hello(stack)
    await source_rule(stack, "AgedLeadsCo")
    play_id = await lead_from(stack, "AgedLeadsCo", consent_days=120)
    async with stack.sessions() as session:
        account = await session.get(Account, stack.account_id)
        assert account is not None
        call = await gate.decide(
            session, account, LEAD, channel="call", purpose="initiated", play=play_id
        )
        email = await gate.decide(
            session, account, LEAD, channel="email", purpose="initiated", play=play_id
        )
    assert (call.action, call.reason) == ("block", "consent_expired")
    assert (email.action, email.reason) == ("allow", "email_not_time_restricted")


async def test_the_play_log_is_the_accounts_own(stack: Stack) -> None:
    await publish_hello(stack)
    await source_rule(stack, "Vendor")
    play_id = await lead_from(stack, "Vendor", consent_days=None)
    async with transaction(stack.sessions) as session:
        _other, key = await accounts.create_account(session, "Other")
    async with httpx.AsyncClient(base_url=stack.url, headers={"Authorization": key.secret}) as b:
        assert (await b.get(f"/v1/plays/{play_id}/log")).status_code == 404
    bad = await stack.api.get(f"/v1/plays/{play_id}/log", params={"limit": "0"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"
