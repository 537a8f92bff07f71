"""A person takes over a conversation (issue 16 item 6), end to end through the HTTP API, the
worker and the sandbox: the inbox (`GET /v1/plays?awaiting=human`), a person's reply
(`POST /v1/plays/{id}/messages`) and the way back to the playbook (`POST .../resume`)."""

from __future__ import annotations

from typing import Any

from gateway import accounts
from gateway.db import transaction
from tests.engine.test_play_lifecycle import (
    LEAD2,
    play_of,
    publish_mortgage,
    start,
)
from tests.support.party_line import texts_to
from tests.support.stack import LEAD, OUR_NUMBER, Hooks, Stack

CREDIT_QUESTION = "Thanks! And how would you rate your credit?"


async def inbox(stack: Stack, api: Any = None, **params: str) -> list[dict[str, Any]]:
    shown = await (api or stack.api).get("/v1/plays", params={"awaiting": "human", **params})
    assert shown.status_code == 200, shown.text
    data: list[dict[str, Any]] = shown.json()["data"]
    return data


async def to_a_human(stack: Stack, phone: str) -> str:
    """A play whose lead's replies match nothing three times: catch-all level 3."""
    play = await start(stack, phone)
    await stack.work()
    for text in ("banana", "what?", "purple"):
        await stack.say(text, phone)
    return str(play["id"])


async def test_catch_all_inbox_human_reply_quiet_bot_then_resume(
    stack: Stack, hooks: Hooks
) -> None:
    await publish_mortgage(stack)
    play_id = await to_a_human(stack, LEAD)
    assert len(texts_to(stack)) == 4  # the question and three catch-all texts
    shown = await play_of(stack, play_id)
    assert shown["paused"] and shown["state"] == "running"
    assert shown["awaiting_human_since"] is not None
    assert [p["id"] for p in await inbox(stack)] == [play_id]

    # A person answers inside the conversation, from the number the lead knows.
    sent = await stack.api.post(
        f"/v1/plays/{play_id}/messages",
        json={"body": "Hi Ann, Dana here. Happy to help!", "sender": "Dana"},
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["message"]["sent_by"] == "Dana"
    await stack.work()
    [human] = [
        r for r in stack.creates(To=LEAD) if (r.get("Body") or "").startswith("Hi Ann, Dana")
    ]
    assert human.get("From") == OUR_NUMBER and human.status == 201
    entries = await stack.log(play_id)
    [entry] = [e for e in entries if e["kind"] == "message" and e["detail"].get("sender")]
    assert entry["detail"]["sender"] == "Dana" and entry["detail"]["reason"] == "human"
    shown = await play_of(stack, play_id)
    [mine] = [m for m in shown["messages"] if m["sent_by"] == "Dana"]
    assert mine["body"] == "Hi Ann, Dana here. Happy to help!"

    # The lead answers the person: recorded, the bot stays quiet, still in the inbox.
    await stack.say("thanks Dana, when can we talk?", LEAD)
    assert len(texts_to(stack)) == 5
    assert [p["id"] for p in await inbox(stack)] == [play_id]
    entries = await stack.log(play_id)
    assert entries[-1]["kind"] == "reply"

    # Back to the playbook at a named step: its text goes out, the play goes on.
    wrong = await stack.api.post(f"/v1/plays/{play_id}/resume", json={"step": "credits"})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["error"]["field"] == "step" and "'credit'" in wrong.text
    resumed = await stack.api.post(
        f"/v1/plays/{play_id}/resume", json={"step": "credit", "by": "Dana"}
    )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False and resumed.json()["awaiting_human_since"] is None
    await stack.work()
    assert texts_to(stack)[-1].startswith(CREDIT_QUESTION)
    assert await inbox(stack) == []
    await stack.say("2", LEAD)  # good credit: on to the connect question
    shown = await play_of(stack, play_id)
    assert shown["step_id"] == "connect" and shown["answers"]["credit"] == "2"
    await stack.work()  # the activities' webhooks
    labels = [a["label"] for a in shown["activities"]]
    assert labels[-2:] == ["human_replied", "resumed"]
    assert {"talk_to_human", "human_replied", "resumed"} <= set(hooks.labels(play_id))


async def test_the_inbox_is_oldest_wait_first_and_paged(stack: Stack) -> None:
    await publish_mortgage(stack)
    first = await to_a_human(stack, LEAD)
    await stack.sandbox.advance(60)
    second = await to_a_human(stack, LEAD2)
    assert [p["id"] for p in await inbox(stack)] == [first, second]
    page = await stack.api.get("/v1/plays", params={"awaiting": "human", "limit": "1"})
    assert [p["id"] for p in page.json()["data"]] == [first]
    cursor = page.json()["next_cursor"]
    assert [p["id"] for p in await inbox(stack, cursor=cursor)] == [second]
    # A play that ends leaves the inbox.
    assert (await stack.api.post(f"/v1/plays/{first}/stop")).status_code == 200
    assert [p["id"] for p in await inbox(stack)] == [second]


async def test_a_person_can_take_over_a_running_conversation(stack: Stack) -> None:
    await publish_mortgage(stack)
    play = await start(stack, LEAD)
    await stack.work()
    sent = await stack.api.post(f"/v1/plays/{play['id']}/messages", json={"body": "Dana here"})
    assert sent.status_code == 201, sent.text
    await stack.work()
    assert [p["id"] for p in await inbox(stack)] == [play["id"]]
    await stack.say("banana", LEAD)  # no catch-all while a person has it
    assert texts_to(stack)[-1] == "Dana here" and len(texts_to(stack)) == 2
    assert (await play_of(stack, play["id"]))["paused"] is True


async def test_refusals(stack: Stack) -> None:
    await publish_mortgage(stack)
    play = await start(stack, LEAD)
    await stack.work()
    # Not waiting for a person: nothing to resume.
    refused = await stack.api.post(f"/v1/plays/{play['id']}/resume", json={"step": "credit"})
    assert refused.status_code == 409, refused.text
    # The lead opts out: the play ends, and a person's text is refused.
    await stack.say("STOP", LEAD)
    ended = await stack.api.post(f"/v1/plays/{play['id']}/messages", json={"body": "hello?"})
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "conflict"
    bad = await stack.api.post(f"/v1/plays/{play['id']}/messages", json={"body": ""})
    assert bad.status_code == 422, bad.text


async def test_the_gate_blocks_a_persons_text_clearly(stack: Stack) -> None:
    await publish_mortgage(stack)
    play_id = await to_a_human(stack, LEAD)
    # An opt-out the business took by phone: in the ledger, the play itself untouched.
    recorded = await stack.api.post("/v1/opt-outs", json={"phone": LEAD})
    assert recorded.status_code == 201, recorded.text
    blocked = await stack.api.post(f"/v1/plays/{play_id}/messages", json={"body": "hello?"})
    assert blocked.status_code == 409, blocked.text
    error = blocked.json()["error"]
    assert (error["code"], error["reason"]) == ("gate_blocked", "opted_out")
    await stack.work()
    assert "hello?" not in texts_to(stack)  # nothing queued, nothing recorded
    labels = [a["label"] for a in (await play_of(stack, play_id))["activities"]]
    assert "human_replied" not in labels


async def test_another_account_gets_404(stack: Stack) -> None:
    await publish_mortgage(stack)
    play_id = await to_a_human(stack, LEAD)
    async with transaction(stack.sessions) as session:
        _other, key = await accounts.create_account(session, "Other Lending")
    headers = {"Authorization": f"Bearer {key.secret}"}
    other = stack.api
    list_other = await other.get("/v1/plays", params={"awaiting": "human"}, headers=headers)
    assert list_other.status_code == 200 and list_other.json()["data"] == []
    for path, body in (
        (f"/v1/plays/{play_id}/messages", {"body": "hi", "sender": "Eve"}),
        (f"/v1/plays/{play_id}/resume", {"step": "credit"}),
    ):
        answer = await other.post(path, json=body, headers=headers)
        assert answer.status_code == 404, answer.text
    await stack.work()
    assert len(texts_to(stack)) == 4  # nothing was sent
    assert [p["id"] for p in await inbox(stack)] == [play_id]
