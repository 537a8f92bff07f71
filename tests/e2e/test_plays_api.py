"""The plays API end to end: publish the example playbook, POST a lead in, watch the text go
out; idempotency keys; one running play per lead and playbook; stop; source rules; isolation."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from gateway import accounts
from gateway.db import transaction
from tests.support.stack import LEAD, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = {"Content-Type": "application/yaml"}


async def publish(stack: Stack, name: str = "mortgage-qualification") -> None:
    body = (EXAMPLES / f"{name}.yaml").read_text()
    response = await stack.api.put(f"/v1/playbooks/{name}", content=body, headers=YAML)
    assert response.status_code == 201, response.text


def play_body(phone: str = LEAD, **lead: object) -> dict[str, object]:
    return {
        "playbook_id": "mortgage-qualification",
        "lead": {"phone": phone, "first_name": "Ann", **lead},
        "settings": {"partner_name": "Acme Lending"},
    }


async def test_post_a_lead_and_watch_the_first_text(stack: Stack) -> None:
    await publish(stack)
    created = await stack.api.post("/v1/plays", json=play_body())
    assert created.status_code == 201, created.text
    play = created.json()
    assert play["state"] == "running" and play["playbook_version"] == 1
    await stack.work()
    [intro] = stack.creates(To=LEAD)
    assert (intro.get("Body") or "").startswith("Hi Ann, it's Sam with Acme Lending.")
    detail = (await stack.api.get(f"/v1/plays/{play['id']}")).json()
    assert [a["label"] for a in detail["activities"]] == ["started"]
    assert detail["messages"][0]["status"] == "delivered"
    assert detail["waiting_reply"] is True and detail["step_id"] == "interested"


async def test_idempotency_key(stack: Stack) -> None:
    await publish(stack)
    headers = {"Idempotency-Key": "crm-lead-77"}
    first = await stack.api.post("/v1/plays", json=play_body(), headers=headers)
    again = await stack.api.post("/v1/plays", json=play_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = await stack.api.post("/v1/plays", json=play_body(last_name="X"), headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1
    listed = (await stack.api.get("/v1/plays")).json()["data"]
    assert len(listed) == 1


async def test_one_running_play_per_lead_and_playbook(stack: Stack) -> None:
    await publish(stack)
    first = (await stack.api.post("/v1/plays", json=play_body())).json()
    second = await stack.api.post("/v1/plays", json=play_body(email="ann@example.com"))
    assert second.status_code == 409
    assert second.json()["error"]["existing_id"] == first["id"]
    stopped = await stack.api.post(f"/v1/plays/{first['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    assert [a["label"] for a in stopped.json()["activities"]] == ["stopped"]
    assert (await stack.api.post(f"/v1/plays/{first['id']}/stop")).status_code == 409
    await stack.work()
    assert stack.creates(To=LEAD) == []  # stopped before its first text left
    third = await stack.api.post("/v1/plays", json=play_body())
    assert third.status_code == 201
    assert (await stack.api.get("/v1/plays?state=stopped")).json()["data"][0]["id"] == first["id"]


async def test_bad_requests_name_the_field(stack: Stack) -> None:
    await publish(stack)
    cases = [
        ({**play_body(), "playbook_id": "nope"}, 404, "playbook_id"),
        (play_body(phone="12"), 422, "lead.phone"),
        ({**play_body(), "settings": {}}, 422, "settings"),
        ({**play_body(), "surprise": True}, 422, "surprise"),
    ]
    for body, status, field in cases:
        response = await stack.api.post("/v1/plays", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["field"] == field
    assert (await stack.api.get("/v1/plays")).json()["data"] == []
    # The playbook's version is read with the lead's upsert: a refusal rolls the lead back.
    assert (await stack.api.get("/v1/leads")).json()["data"] == []
    keyed = {"Idempotency-Key": "refused-then-fine"}
    refused = await stack.api.post("/v1/plays", json={**play_body(), "settings": {}}, headers=keyed)
    assert refused.status_code == 422
    assert (await stack.api.post("/v1/plays", json=play_body(), headers=keyed)).status_code == 201
    assert (await stack.api.get("/v1/plays?cursor=zzz")).status_code == 422
    assert (await stack.api.get("/v1/plays/play_nope")).status_code == 404


async def test_source_rule_round_robin_under_concurrent_leads(stack: Stack) -> None:
    await publish(stack)
    reps = []
    for name, available in (("Ana", True), ("Ben", False), ("Cy", True)):
        rep = await stack.api.post(
            "/v1/reps",
            json={"name": name, "phone": f"+1415555{len(reps):04d}", "available": available},
        )
        reps.append(rep.json()["id"])
    rule = await stack.api.post(
        "/v1/sources",
        json={
            "origin": "EverQuote",
            "playbook_id": "mortgage-qualification",
            "distribution": "round_robin",
            "rep_ids": reps,
            "settings": {"partner_name": "Acme Lending"},
        },
    )
    assert rule.status_code == 201, rule.text
    responses = await asyncio.gather(
        *(
            stack.api.post(
                "/v1/leads",
                json={
                    "phone": f"+1415556{i:04d}",
                    "originators": [{"origin": "EverQuote", "key": f"eq-{i}"}],
                },
            )
            for i in range(12)
        )
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    plays = [r.json()["play"] for r in responses]
    split = Counter(p["rep_id"] for p in plays)
    assert split == {reps[0]: 6, reps[2]: 6}
    assert {p["source_rule_id"] for p in plays} == {rule.json()["id"]}
    await stack.work()
    leads = {f"+1415556{i:04d}" for i in range(12)}
    to_leads = [c for c in stack.creates() if dict(c.params)["To"] in leads]
    assert len(to_leads) == 12  # one first text per lead; the rest tell each rep of each lead
    assert len(stack.creates()) == 24


async def test_plays_are_isolated_by_account(stack: Stack) -> None:
    await publish(stack)
    play = (await stack.api.post("/v1/plays", json=play_body())).json()
    async with transaction(stack.sessions) as session:
        _other, key = await accounts.create_account(session, "Other")
    headers = {"Authorization": key.secret}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as other:
        assert (await other.get(f"/v1/plays/{play['id']}")).status_code == 404
        assert (await other.post(f"/v1/plays/{play['id']}/stop")).status_code == 404
        assert (await other.get("/v1/plays")).json()["data"] == []
        own = await other.post("/v1/plays", json=play_body())
        assert own.status_code == 404  # B has no such playbook


async def test_messages_and_numbers_are_isolated_by_account(stack: Stack) -> None:
    message = (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "hi"})).json()
    [number] = (await stack.api.get("/v1/numbers")).json()["data"]
    async with transaction(stack.sessions) as session:
        _other, key = await accounts.create_account(session, "Other")
    async with httpx.AsyncClient(base_url=stack.url, headers={"Authorization": key.secret}) as b:
        assert (await b.get(f"/v1/messages/{message['id']}")).status_code == 404
        assert (await b.get(f"/v1/messages?phone={LEAD}")).json()["data"] == []
        assert (await b.get("/v1/numbers")).json()["data"] == []
        assert (await b.delete(f"/v1/numbers/{number['id']}")).status_code == 404
        lead_id = message["lead_id"]
        if lead_id is not None:
            refused = await b.post("/v1/messages", json={"lead_id": lead_id, "body": "x"})
            assert refused.status_code == 404
    assert (await stack.api.get(f"/v1/messages/{message['id']}")).status_code == 200
    assert len((await stack.api.get("/v1/numbers")).json()["data"]) == 1
