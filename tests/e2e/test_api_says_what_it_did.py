"""The API says what it did (issue 16, item 4), through HTTP with the worker and the sandbox:
a POST /v1/leads that started nothing says so; undeclared settings are refused; source-rule
origins compare case-insensitively; a lead shows its opt-out; a play shows its next action; the
play log shows every text's body, every reply and every gate decision."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from arq.constants import default_queue_name

from gateway.work import SMS_SENDS
from tests.support.sql import statements
from tests.support.stack import LEAD, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = {"Content-Type": "application/yaml"}
MORTGAGE = "mortgage-qualification"


async def publish(stack: Stack, name: str) -> None:
    body = (EXAMPLES / f"{name}.yaml").read_text()
    response = await stack.api.put(f"/v1/playbooks/{name}", content=body, headers=YAML)
    assert response.status_code == 201, response.text


async def start(stack: Stack, phone: str = LEAD, **settings: object) -> dict[str, Any]:
    response = await stack.api.post(
        "/v1/plays",
        json={
            "playbook_id": MORTGAGE,
            "lead": {"phone": phone, "first_name": "Ann"},
            "settings": {"partner_name": "Acme Lending", **settings},
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_post_lead_says_when_nothing_started(stack: Stack) -> None:
    await publish(stack, MORTGAGE)
    rule = await stack.api.post(
        "/v1/sources",
        json={
            "origin": "EverQuote",
            "playbook_id": MORTGAGE,
            "distribution": "manual",
            "settings": {"partner_name": "Acme Lending"},
        },
    )
    assert rule.status_code == 201, rule.text
    # The lead's source writes its name in lower case: the rule matches all the same.
    lead = {"phone": LEAD, "originators": [{"origin": "everquote", "key": "eq-1"}]}
    first = await stack.api.post("/v1/leads", json=lead)
    assert first.status_code == 201, first.text
    assert first.json()["play_started"] is True
    assert first.json()["play"]["source_rule_id"] == rule.json()["id"]
    again = await stack.api.post("/v1/leads", json=lead)
    assert again.status_code == 200, again.text
    assert again.json()["play_started"] is False
    assert again.json()["play"]["id"] == first.json()["play"]["id"]
    # No rule for the origin: nothing started, and nothing was running either.
    other = await stack.api.post(
        "/v1/leads", json={"phone": "+14155550124", "originators": [{"origin": "X", "key": "1"}]}
    )
    assert other.status_code == 201 and other.json()["play_started"] is False
    assert other.json()["play"] is None
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1


async def test_undeclared_settings_are_refused_with_a_did_you_mean(stack: Stack) -> None:
    await publish(stack, MORTGAGE)
    refused = await stack.api.post(
        "/v1/plays",
        json={
            "playbook_id": MORTGAGE,
            "lead": {"phone": LEAD},
            "settings": {"partner_name": "Acme Lending", "agentname": "Bo"},
        },
    )
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "settings.agentname"
    assert "did you mean 'agent_name'?" in error["message"]
    # Refused before anything was written.
    assert (await stack.api.get("/v1/leads")).json()["data"] == []
    assert (await stack.api.get("/v1/plays")).json()["data"] == []

    rule = {"origin": "EverQuote", "playbook_id": MORTGAGE, "distribution": "manual"}
    bad_rule = await stack.api.post("/v1/sources", json={**rule, "settings": {"topik": "x"}})
    assert bad_rule.status_code == 422
    assert bad_rule.json()["error"]["field"] == "settings.topik"
    assert "did you mean 'topic'?" in bad_rule.json()["error"]["message"]
    # Declared settings, and the gateway's own max_consent_age_days, are fine.
    good = {"agent_name": "Bo", "partner_name": "Acme", "max_consent_age_days": 30}
    created = await stack.api.post("/v1/sources", json={**rule, "settings": good})
    assert created.status_code == 201, created.text
    patched = await stack.api.patch(
        f"/v1/sources/{created.json()['id']}", json={"settings": {"agentname": "Bo"}}
    )
    assert patched.status_code == 422 and patched.json()["error"]["field"] == "settings.agentname"

    # A declared setting is used: the text says "Bo".
    await start(stack, agent_name="Bo")
    await stack.work()
    [intro] = [r.get("Body") or "" for r in stack.creates(To=LEAD)]
    assert "it's Bo with Acme Lending" in intro


async def test_a_drip_takes_the_settings_of_the_playbook_it_moves_leads_to(stack: Stack) -> None:
    await publish(stack, "insurance-xdate")
    await publish(stack, "insurance-quote-drip")
    response = await stack.api.post(
        "/v1/plays",
        json={
            "playbook_id": "insurance-quote-drip",
            "lead": {"phone": LEAD},
            "settings": {"partner_name": "Acme", "agency_phone": "555-0100", "topic": "auto"},
        },
    )
    assert response.status_code == 201, response.text


async def test_source_rule_origins_compare_case_insensitively(stack: Stack) -> None:
    await publish(stack, MORTGAGE)
    rule = {"playbook_id": MORTGAGE, "distribution": "manual"}
    first = await stack.api.post("/v1/sources", json={**rule, "origin": "EverQuote"})
    assert first.status_code == 201
    clash = await stack.api.post("/v1/sources", json={**rule, "origin": "everquote"})
    assert clash.status_code == 409
    assert clash.json()["error"]["existing_id"] == first.json()["id"]
    other = await stack.api.post("/v1/sources", json={**rule, "origin": "QuoteWizard"})
    renamed = await stack.api.patch(
        f"/v1/sources/{other.json()['id']}", json={"origin": "EVERQUOTE"}
    )
    assert renamed.status_code == 409
    cloned = await stack.api.post(
        f"/v1/sources/{other.json()['id']}/clone", json={"origin": "Everquote"}
    )
    assert cloned.status_code == 409
    # A rule may change the case of its own origin; the form written is what is shown.
    recased = await stack.api.patch(
        f"/v1/sources/{first.json()['id']}", json={"origin": "EVERQUOTE"}
    )
    assert recased.status_code == 200 and recased.json()["origin"] == "EVERQUOTE"
    found = (await stack.api.get("/v1/sources?origin=everQuote")).json()["data"]
    assert [r["id"] for r in found] == [first.json()["id"]]


async def test_a_lead_shows_its_opt_out(stack: Stack) -> None:
    await publish(stack, MORTGAGE)
    play = await start(stack)
    for n in range(4):
        await start(stack, phone=f"+1415555{300 + n:04d}")
    await stack.work()
    await stack.say("STOP")
    lead = (await stack.api.get(f"/v1/leads/{play['lead_id']}")).json()
    assert lead["opted_out"] is True and lead["opt_out_channel"] == "sms"
    assert lead["opted_out_at"] is not None
    assert lead["phone_status"] == "ok"  # the number works; the lead said no
    with statements("opt_out_events") as one:
        single = (await stack.api.get(f"/v1/leads?phone={LEAD}")).json()["data"]
    with statements("opt_out_events") as five:
        listed = (await stack.api.get("/v1/leads")).json()["data"]
    assert [x["opted_out"] for x in single] == [True]
    assert sorted(x["opted_out"] for x in listed) == [False, False, False, False, True]
    others = [x for x in listed if x["phone"] != LEAD]
    assert all(x["opted_out_at"] is None and x["opt_out_channel"] is None for x in others)
    assert len(one) == len(five) == 1  # one ledger query for any number of leads

    await stack.say("START")
    lead = (await stack.api.get(f"/v1/leads/{play['lead_id']}")).json()
    assert lead["opted_out"] is False and lead["opted_out_at"] is None


async def test_a_play_shows_its_next_action(stack: Stack) -> None:
    await publish(stack, MORTGAGE)
    with statements() as ran:
        play = await start(stack)
    # The play's row is written once, as its first step left it (no UPDATE after the step),
    # and the playbook's latest version is asked with the lead's upsert (no read of its own).
    writes = [s.split(" ", 3)[:3] for s in ran if re.match(r"(INSERT INTO|UPDATE) plays ", s)]
    assert writes == [["INSERT", "INTO", "plays"]]
    assert not any(s.startswith("SELECT playbooks.latest_version") for s in ran)
    # (On PostgreSQL the contact lock's upsert comes first in the same statement, a WITH.)
    assert any("INSERT INTO leads" in s and "latest_version" in s for s in ran)
    # The first step ran before the answer: its text is queued and the play waits for the
    # lead's answer, nudging after 24 hours without one (the playbook's rule).
    assert play["next_action"] == "reengagement"
    [first] = (await stack.api.get(f"/v1/plays/{play['id']}")).json()["messages"]
    assert first["status"] == "queued"
    # Its send (its account's drain) is the one job: no `plays.advance` ran, or is owed,
    # before it.
    jobs = await stack.api_redis.zrange(default_queue_name, 0, -1)
    assert [j for j in jobs if not j.startswith(b"keys.")] == [
        SMS_SENDS.job_id(stack.account_id).encode()
    ]
    await stack.work()
    shown = (await stack.api.get(f"/v1/plays/{play['id']}")).json()
    sent = at(shown["messages"][0]["created_at"])
    assert (shown["next_action"], shown["next_action_at"]) == (
        "reengagement",
        play["next_action_at"],
    )
    assert at(shown["next_action_at"]) - sent < timedelta(hours=24, minutes=1)
    assert at(shown["next_action_at"]) - sent >= timedelta(hours=24)
    [listed] = (await stack.api.get("/v1/plays")).json()["data"]
    assert (listed["next_action"], listed["next_action_at"]) == (
        shown["next_action"],
        shown["next_action_at"],
    )
    stopped = (await stack.api.post(f"/v1/plays/{play['id']}/stop")).json()
    assert (stopped["next_action"], stopped["next_action_at"]) == (None, None)

    await publish(stack, "insurance-xdate")
    await publish(stack, "insurance-quote-drip")
    drip = await stack.api.post(
        "/v1/plays",
        json={
            "playbook_id": "insurance-quote-drip",
            "lead": {"phone": "+14155550124", "email": "ann@example.com"},
            "settings": {"partner_name": "Acme", "agency_phone": "555-0100"},
        },
    )
    await stack.work()
    after_welcome = (await stack.api.get(f"/v1/plays/{drip.json()['id']}")).json()
    assert after_welcome["step_id"] == "quote_email"
    assert after_welcome["next_action"] == "send_email"  # an hour after the welcome text
    welcome = at(after_welcome["messages"][0]["created_at"])
    assert timedelta(minutes=59) < at(after_welcome["next_action_at"]) - welcome
    assert at(after_welcome["next_action_at"]) - welcome <= timedelta(hours=1)


async def test_the_play_log_shows_texts_replies_and_gate_decisions(stack: Stack) -> None:
    await publish(stack, MORTGAGE)
    play = await start(stack)
    await stack.work()
    await stack.say("yes please")
    log = (await stack.api.get(f"/v1/plays/{play['id']}/log")).json()["data"]
    texts = [e["detail"] for e in log if e["kind"] == "message"]
    sent = [r.get("Body") for r in stack.creates(To=LEAD)]
    assert [t["body"] for t in texts] == sent  # as sent, opt-out notice included
    assert len(sent) == 2 and "STOP" in (sent[0] or "")
    assert all(t["status"] == "delivered" and t["to"] == LEAD for t in texts)
    replies = [e["detail"]["body"] for e in log if e["kind"] == "reply"]
    assert replies == ["yes please"]
    allowed = [e["detail"]["message_id"] for e in log if e["kind"] == "allowed"]
    assert allowed == [t["message_id"] for t in texts]  # one gate decision per text
