"""Reps are told by email too (issue 16, item 5), and a choice's `event: talk_to_human` hands
the play to a person (item 6), end to end through the HTTP API, the worker and the sandbox:
emails are captured (no SMTP_URL) and read back with `GET /v1/emails`, texts arrive at the
rep's sandbox phone, the unsubscribe link is followed by a plain HTTP client."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.stack import LEAD, OUR_NUMBER, Stack

YAML = {"Content-Type": "application/yaml"}
REP_PHONE, REP_EMAIL = "+14155550141", "dana@acme.test"
PLAYBOOK = """\
name: Quote or a person
activities:
  outcomes: [qualified]
notify:
  email: true
steps:
  - id: ask
    kind: ask
    text: "Hi {lead.first_name|there}! Reply QUOTE for a quote or AGENT for a person."
    choices:
      - keywords: [quote]
        outcome: qualified
      - keywords: [agent, person]
        reply: "Sure, someone from our team will text you shortly."
        event: talk_to_human
        goto: after
  - id: after
    kind: send
    text: "Anything else we can help with?"
"""


async def setup(stack: Stack, *, playbook: str = PLAYBOOK, **rule: Any) -> str:
    """The playbook, one rep with an email address, and a round-robin Zillow rule to them."""
    published = await stack.api.put("/v1/playbooks/quote", content=playbook, headers=YAML)
    assert published.status_code == 201, published.text
    rep = await stack.api.post(
        "/v1/reps", json={"name": "Dana", "phone": REP_PHONE, "email": REP_EMAIL}
    )
    assert rep.status_code == 201, rep.text
    rep_id: str = rep.json()["id"]
    created = await stack.api.post(
        "/v1/sources",
        json={"origin": "Zillow", "playbook_id": "quote", "rep_ids": [rep_id], **rule},
    )
    assert created.status_code == 201, created.text
    return rep_id


async def new_lead(stack: Stack, phone: str = LEAD, key: str = "z-1") -> dict[str, Any]:
    created = await stack.api.post(
        "/v1/leads",
        json={
            "phone": phone,
            "first_name": "Ann",
            "last_name": "Lee",
            "email": "ann@example.com",
            "originators": [{"origin": "Zillow", "key": key}],
        },
    )
    assert created.status_code == 201, created.text
    await stack.work()
    body: dict[str, Any] = created.json()
    return body


async def rep_emails(stack: Stack) -> list[dict[str, Any]]:
    shown = await stack.api.get("/v1/emails", params={"limit": 100})
    assert shown.status_code == 200, shown.text
    return [e for e in shown.json()["data"] if e["to"] == REP_EMAIL]


def texts_to(stack: Stack, phone: str) -> list[str]:
    return [
        m.body
        for m in stack.sandbox.messaging.messages.values()
        if m.to == phone and m.status == "delivered"
    ]


async def test_the_rule_emails_the_rep_on_assignment_and_on_talk_to_human(stack: Stack) -> None:
    rep_id = await setup(stack, notify={"sms": True, "email": True})
    started = await new_lead(stack)
    lead_id, play_id = started["lead"]["id"], started["play"]["id"]

    [assigned] = await rep_emails(stack)
    assert assigned["status"] == "captured" and assigned["lead_id"] == lead_id
    assert assigned["rep_id"] == rep_id and assigned["play_id"] is None
    assert "Ann Lee" in assigned["subject"] and "assigned to you" in assigned["subject"]
    assert lead_id in assigned["body"] and LEAD in assigned["body"]
    assert "/unsubscribe/" in assigned["body"]  # staff mail, but a way out all the same
    [text] = texts_to(stack, REP_PHONE)  # and texted, as the rule says
    assert lead_id in text

    # The lead asks for a person through the playbook's choice: the play waits in the inbox
    # at the step the playbook would go to next, and the rep is emailed (and texted) again.
    await stack.say("agent please")
    inbox = await stack.api.get("/v1/plays", params={"awaiting": "human"})
    assert [p["id"] for p in inbox.json()["data"]] == [play_id]
    shown = (await stack.api.get(f"/v1/plays/{play_id}")).json()
    assert shown["paused"] and shown["state"] == "running" and shown["step_id"] == "after"
    lead_texts = [m.body for m in stack.sandbox.messaging.messages.values() if m.to == LEAD]
    assert lead_texts[-1].startswith("Sure, someone")  # the choice's reply, no next step
    emails = await rep_emails(stack)
    assert len(emails) == 2 and "wants to talk to a person" in emails[1]["subject"]
    assert emails[1]["lead_id"] == lead_id and lead_id in emails[1]["body"]
    assert len(texts_to(stack, REP_PHONE)) == 2
    log = (await stack.api.get(f"/v1/plays/{play_id}/log", params={"limit": 500})).json()
    told = [e["detail"] for e in log["data"] if e["kind"] == "rep_notified"]
    assert [(d["why"], d.get("channel", "sms")) for d in told] == [
        ("assigned", "sms"), ("assigned", "email"),
        ("talk_to_human", "sms"), ("talk_to_human", "email"),
    ]  # fmt: skip


async def test_the_playbook_default_applies_when_the_rule_does_not_say(stack: Stack) -> None:
    await setup(stack)  # the rule names no channel: the playbook's notify (email on, sms on)
    rule = (await stack.api.get("/v1/sources")).json()["data"][0]
    assert rule["notify"] == {}
    started = await new_lead(stack)
    [email] = await rep_emails(stack)
    assert email["lead_id"] == started["lead"]["id"]
    assert len(texts_to(stack, REP_PHONE)) == 1

    # The rule overrides one channel, the other stays the playbook's.
    patched = await stack.api.patch(f"/v1/sources/{rule['id']}", json={"notify": {"sms": False}})
    assert patched.status_code == 200 and patched.json()["notify"] == {"sms": False}
    await new_lead(stack, "+14155550124", "z-2")
    assert len(await rep_emails(stack)) == 2
    assert len(texts_to(stack, REP_PHONE)) == 1


async def test_a_playbook_without_notify_email_sends_none(stack: Stack) -> None:
    await setup(stack, playbook=PLAYBOOK.replace("notify:\n  email: true\n", ""))
    await new_lead(stack)
    assert await rep_emails(stack) == []
    assert len(texts_to(stack, REP_PHONE)) == 1


async def test_the_link_stops_only_the_reps_notice_emails(stack: Stack) -> None:
    await setup(stack, notify={"email": True})
    await new_lead(stack)
    [first] = await rep_emails(stack)
    [link] = [w for w in first["body"].split() if "/unsubscribe/" in w]
    async with httpx.AsyncClient() as browser:  # no API key: the token is the authority
        page = await browser.get(link)
        assert page.status_code == 200 and "leads assigned to you" in page.text
        done = await browser.post(link, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "You are unsubscribed" in done.text

    await new_lead(stack, "+14155550124", "z-2")
    second = (await rep_emails(stack))[1]
    assert (second["status"], second["gate_reason"]) == ("blocked", "opted_out")
    assert len(texts_to(stack, REP_PHONE)) == 2  # the rep's texts go on
    # Nothing entered the consumer ledger: neither the rep's phone nor the lead's opted out.
    for phone in (REP_PHONE, LEAD):
        ledger = await stack.api.get(f"/v1/opt-outs/{phone}")
        assert ledger.json()["status"] != "opted_out" and ledger.json()["history"] == []


async def test_the_notice_is_gated_on_the_rep_not_the_lead(stack: Stack) -> None:
    """The lead texts STOP while the rep's email waits to leave: the email still goes (the
    lead's status is not the rep's). The rep's own STOP holds their texts, not their emails."""
    rep_id = await setup(stack, notify={"email": True}, distribution="manual", rep_ids=[])
    stack.sandbox.send_sms(REP_PHONE, OUR_NUMBER, "STOP")  # the rep's own text opt-out
    await stack.sandbox.settle()
    started = await new_lead(stack)
    assigned = await stack.api.post(
        f"/v1/leads/{started['lead']['id']}/assign", json={"rep_id": rep_id}
    )
    assert assigned.status_code == 200, assigned.text
    await stack.say("STOP")  # before the worker sends the rep's notices
    assert (await stack.api.get(f"/v1/opt-outs/{LEAD}")).json()["status"] == "opted_out"
    [email] = await rep_emails(stack)
    assert email["status"] == "captured" and email["lead_id"] == started["lead"]["id"]
    assert [t for t in texts_to(stack, REP_PHONE) if started["lead"]["id"] in t] == []
