"""`Idempotency-Key` on `POST /v1/plays`: only a success is remembered. A refused request
changes nothing (not the lead, not the key), so the same key works once the refusal's cause is
gone."""

from __future__ import annotations

from sqlmodel import select

from gateway.models import IdempotencyKey
from tests.e2e.test_plays_api import play_body, publish
from tests.support.stack import LEAD, Stack


async def _lead(stack: Stack, lead_id: str) -> dict[str, object]:
    response = await stack.api.get(f"/v1/leads/{lead_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


async def test_a_409_changes_nothing_and_its_key_works_after_the_play_stops(stack: Stack) -> None:
    await publish(stack)
    running = await stack.api.post("/v1/plays", json=play_body(email="ann@example.com"))
    assert running.status_code == 201, running.text
    play = running.json()
    before = await _lead(stack, play["lead_id"])

    headers = {"Idempotency-Key": "crm-lead-409"}
    changed = play_body(first_name="Bob", last_name="Other", email="bob@example.com")
    refused = await stack.api.post("/v1/plays", json=changed, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "conflict"
    assert refused.json()["error"]["existing_id"] == play["id"]
    # The refused request left the lead as it was, and kept no key.
    after = await _lead(stack, play["lead_id"])
    for field in ("first_name", "last_name", "email", "updated_at"):
        assert after[field] == before[field], field
    async with stack.sessions() as session:
        keys = (await session.exec(select(IdempotencyKey))).all()
    assert keys == []

    # Asked again while the play still runs: the same refusal, not `in_progress`.
    again = await stack.api.post("/v1/plays", json=changed, headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    stopped = await stack.api.post(f"/v1/plays/{play['id']}/stop")
    assert stopped.status_code == 200, stopped.text
    retried = await stack.api.post("/v1/plays", json=changed, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] != play["id"]
    updated = await _lead(stack, play["lead_id"])
    assert (updated["first_name"], updated["email"]) == ("Bob", "bob@example.com")
    # From now on the key answers what its success answered.
    replay = await stack.api.post("/v1/plays", json=changed, headers=headers)
    assert replay.status_code == 201 and replay.json()["id"] == retried.json()["id"]


async def test_a_404_keeps_its_key_free(stack: Stack) -> None:
    headers = {"Idempotency-Key": "crm-lead-404"}
    missing = await stack.api.post("/v1/plays", json=play_body(), headers=headers)
    assert missing.status_code == 404, missing.text
    listed = (await stack.api.get("/v1/leads", params={"phone": LEAD})).json()
    assert listed["data"] == []
    await publish(stack)
    created = await stack.api.post("/v1/plays", json=play_body(), headers=headers)
    assert created.status_code == 201, created.text
