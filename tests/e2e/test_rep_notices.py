"""Reps are told (issue 16, item 5), end to end through the HTTP API, the worker and the
sandbox: a source rule's round robin texts the rep it picks, a manual assignment through
`POST /v1/leads/{id}/assign` texts the rep and records `rep_assigned` with its webhook, the
lead asking for a person texts the assigned rep again, a rep who texted STOP is not texted,
and webhook payloads carry the assigned rep beside the documented fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import col, select

from gateway import accounts
from gateway.db import transaction
from gateway.models import Message, MessageStatus
from gateway.webhooks.payloads import WebhookPayload
from tests.support.stack import LEAD, Hooks, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = {"Content-Type": "application/yaml"}
REP_PHONES = ["+14155550141", "+14155550142"]
LEAD2 = "+14155550124"
DOCUMENTED = list(WebhookPayload.model_fields)
REP_FIELDS = ["rep_id", "rep_name", "rep_phone"]


async def setup(stack: Stack, distribution: str = "round_robin", **rule: Any) -> list[str]:
    """The mortgage playbook, two reps, and a Zillow source rule over them."""
    body = (EXAMPLES / "mortgage-qualification.yaml").read_text()
    published = await stack.api.put(
        "/v1/playbooks/mortgage-qualification", content=body, headers=YAML
    )
    assert published.status_code == 201, published.text
    reps = []
    for i, phone in enumerate(REP_PHONES):
        created = await stack.api.post("/v1/reps", json={"name": f"Rep {i + 1}", "phone": phone})
        assert created.status_code == 201, created.text
        reps.append(created.json()["id"])
    created = await stack.api.post(
        "/v1/sources",
        json={
            "origin": "Zillow",
            "playbook_id": "mortgage-qualification",
            "distribution": distribution,
            "rep_ids": reps if distribution == "round_robin" else [],
            "settings": {"partner_name": "Acme Lending"},
            **rule,
        },
    )
    assert created.status_code == 201, created.text
    return reps


async def new_lead(stack: Stack, phone: str, key: str) -> dict[str, Any]:
    created = await stack.api.post(
        "/v1/leads",
        json={
            "phone": phone,
            "first_name": "Ann",
            "last_name": "Lee",
            "originators": [{"origin": "Zillow", "key": key}],
        },
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def received(stack: Stack, phone: str) -> list[str]:
    """The bodies of the texts that reached `phone` (delivered by the sandbox)."""
    return [
        m.body
        for m in stack.sandbox.messaging.messages.values()
        if m.to == phone and m.status == "delivered"
    ]


async def test_round_robin_texts_each_rep_its_lead_and_again_on_talk_to_human(
    stack: Stack, hooks: Hooks
) -> None:
    reps = await setup(stack)
    first = await new_lead(stack, LEAD, "z-1")
    second = await new_lead(stack, LEAD2, "z-2")
    assert [first["play"]["rep_id"], second["play"]["rep_id"]] == reps
    await stack.work()

    lead_id = first["lead"]["id"]
    [notice] = received(stack, REP_PHONES[0])
    assert "Ann Lee" in notice and LEAD in notice and lead_id in notice
    assert "assigned to you" in notice
    [other] = received(stack, REP_PHONES[1])
    assert second["lead"]["id"] in other and lead_id not in other
    play_id = first["play"]["id"]
    logged = [e for e in await stack.log(play_id) if e["kind"] == "rep_notified"]
    assert [e["detail"]["rep_id"] for e in logged] == [reps[0]]

    # The lead's webhooks carry the assigned rep, beside the documented fields.
    [started] = hooks.of(play_id, "started")
    assert list(started) == DOCUMENTED + REP_FIELDS
    assert [started[f] for f in REP_FIELDS] == [reps[0], "Rep 1", REP_PHONES[0]]

    # Three answers the playbook can't place: the lead wants a person, and the rep is told.
    for text in ("banana", "what?", "purple"):
        await stack.say(text, LEAD)
    assert hooks.of(play_id, "talk_to_human")
    texts = received(stack, REP_PHONES[0])
    assert len(texts) == 2 and "wants to talk to a person" in texts[1]
    assert lead_id in texts[1]
    assert len(received(stack, REP_PHONES[1])) == 1  # the other rep hears nothing of it


async def test_manual_assignment_texts_the_rep_records_the_activity_and_webhook(
    stack: Stack, hooks: Hooks
) -> None:
    reps = await setup(stack, distribution="manual")
    lead = await new_lead(stack, LEAD, "z-1")
    lead_id, play_id = lead["lead"]["id"], lead["play"]["id"]
    assert lead["play"]["rep_id"] is None
    await stack.work()
    assert received(stack, REP_PHONES[0]) == []  # manual: nobody is told until assigned

    assigned = await stack.api.post(f"/v1/leads/{lead_id}/assign", json={"rep_id": reps[1]})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json() == {
        "lead_id": lead_id,
        "rep_id": reps[1],
        "play_ids": [play_id],
        "changed_play_ids": [play_id],
    }
    await stack.work()
    [notice] = received(stack, REP_PHONES[1])
    assert lead_id in notice and "Ann Lee" in notice
    shown = await stack.api.get(f"/v1/plays/{play_id}")
    assert shown.json()["rep_id"] == reps[1]
    [hook] = hooks.of(play_id, "rep_assigned")
    assert hook["activity_note"] == "Rep 2"
    assert [hook[f] for f in REP_FIELDS] == [reps[1], "Rep 2", REP_PHONES[1]]
    kinds = [e["kind"] for e in await stack.log(play_id)]
    assert "rep_assigned" in kinds and "rep_notified" in kinds

    # The same request again changes nothing and texts nobody twice.
    again = await stack.api.post(f"/v1/leads/{lead_id}/assign", json={"rep_id": reps[1]})
    assert again.status_code == 200 and again.json()["changed_play_ids"] == []
    await stack.work()
    assert len(received(stack, REP_PHONES[1])) == 1
    assert len(hooks.of(play_id, "rep_assigned")) == 1

    # Unassigning: the activity and its webhook name the rep; later payloads carry none.
    taken = await stack.api.delete(f"/v1/leads/{lead_id}/assign")
    assert taken.status_code == 200, taken.text
    assert taken.json()["rep_id"] is None and taken.json()["changed_play_ids"] == [play_id]
    await stack.work()
    [hook] = hooks.of(play_id, "rep_unassigned")
    assert hook["activity_note"] == f"Rep 2 ({reps[1]})"
    assert list(hook) == DOCUMENTED
    assert (await stack.api.get(f"/v1/plays/{play_id}")).json()["rep_id"] is None


async def test_a_rep_who_texted_stop_is_not_texted(stack: Stack) -> None:
    reps = await setup(stack, distribution="manual")
    await stack.say("STOP", REP_PHONES[0])  # the rep's own opt-out
    lead = await new_lead(stack, LEAD, "z-1")
    await stack.work()
    before = len(stack.creates(To=REP_PHONES[0]))  # the STOP confirmation
    assigned = await stack.api.post(
        f"/v1/leads/{lead['lead']['id']}/assign", json={"rep_id": reps[0]}
    )
    assert assigned.status_code == 200, assigned.text
    await stack.work()
    assert len(stack.creates(To=REP_PHONES[0])) == before  # the gate held it back
    async with stack.sessions() as session:
        [notice] = (
            await session.exec(
                select(Message).where(
                    Message.to_number == REP_PHONES[0], col(Message.purpose) == "staff"
                )
            )
        ).all()
    assert notice.status == MessageStatus.BLOCKED and notice.gate_reason == "opted_out"
    # The rep's opt-out is the rep's: the lead's play goes on.
    shown = await stack.api.get(f"/v1/plays/{lead['play']['id']}")
    assert shown.json()["state"] == "running"


async def test_a_rule_with_sms_notify_off_texts_nobody(stack: Stack) -> None:
    await setup(stack, notify={"sms": False})
    lead = await new_lead(stack, LEAD, "z-1")
    await stack.work()
    assert received(stack, REP_PHONES[0]) == []
    kinds = [e["kind"] for e in await stack.log(lead["play"]["id"])]
    assert "rep_not_notified" in kinds and "rep_notified" not in kinds
    rule = (await stack.api.get("/v1/sources")).json()["data"][0]
    assert rule["notify"] == {"sms": False}


async def test_reps_are_texted_at_night(stack: Stack) -> None:
    """Reps are staff: quiet hours (which hold the lead's texts) don't hold their notices."""
    reps = await setup(stack, distribution="manual")
    lead = await new_lead(stack, LEAD, "z-1")
    await stack.work()
    await stack.sandbox.advance(11 * 3600)  # 23:00 in San Francisco
    assigned = await stack.api.post(
        f"/v1/leads/{lead['lead']['id']}/assign", json={"rep_id": reps[0]}
    )
    assert assigned.status_code == 200, assigned.text
    await stack.work()
    [notice] = received(stack, REP_PHONES[0])
    assert lead["lead"]["id"] in notice


async def test_assignment_is_scoped_to_the_account(stack: Stack) -> None:
    reps = await setup(stack, distribution="manual")
    lead = await new_lead(stack, LEAD, "z-1")
    async with transaction(stack.sessions) as session:
        _, other_key = await accounts.create_account(session, "Other Co")
    other = {"Authorization": f"Bearer {other_key.secret}"}
    lead_id = lead["lead"]["id"]
    # Another account can't assign this lead, nor unassign it.
    refused = await stack.api.post(
        f"/v1/leads/{lead_id}/assign", json={"rep_id": reps[0]}, headers=other
    )
    assert refused.status_code == 404, refused.text
    assert (await stack.api.delete(f"/v1/leads/{lead_id}/assign", headers=other)).status_code == 404
    # Nor can this account assign another account's rep.
    theirs = await stack.api.post(
        "/v1/reps", json={"name": "Theirs", "phone": "+14155550149"}, headers=other
    )
    assert theirs.status_code == 201, theirs.text
    wrong = await stack.api.post(
        f"/v1/leads/{lead_id}/assign", json={"rep_id": theirs.json()["id"]}
    )
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "not_found"
    bad = await stack.api.post(f"/v1/leads/{lead_id}/assign", json={"rep": reps[0]})
    assert bad.status_code == 422
    shown = await stack.api.get(f"/v1/plays/{lead['play']['id']}")
    assert shown.json()["rep_id"] is None
