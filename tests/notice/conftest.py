"""Helpers shared by the notice and consent-age tests; the full stack (`stack`) is the
tests.support.stack plugin's."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from gateway.api.play_log import PlayLogPublic
from gateway.clock import now
from gateway.models import Activity, Message
from tests.support.stack import LEAD, Stack

NOTICE = " Reply STOP to opt out."
DAY = 24 * 3600.0
YAML = {"Content-Type": "application/yaml"}
HELLO_PLAYBOOK = """\
name: Hello
steps:
  - id: hello
    kind: send
    text: "Hi {lead.first_name|there}, your quote is ready."
"""


async def send_text(stack: Stack, body: str, phone: str = LEAD) -> Message:
    """POST /v1/messages, run the worker, and return the message row as recorded."""
    created = await stack.api.post("/v1/messages", json={"phone": phone, "body": body})
    assert created.status_code == 201, created.text
    await stack.work()
    return await message_row(stack, created.json()["id"])


async def message_row(stack: Stack, message_id: str) -> Message:
    async with stack.sessions() as session:
        row = await session.get(Message, message_id)
    assert row is not None
    return row


def bodies_to(stack: Stack, phone: str = LEAD) -> list[str]:
    """What reached Twilio for `phone`, in order."""
    return [r.get("Body") or "" for r in stack.creates(To=phone) if r.status == 201]


async def later(stack: Stack, days: float) -> None:
    """Move the shared virtual clock forward (noon stays noon: quiet hours stay open)."""
    await stack.sandbox.advance(days * DAY)


async def publish_hello(stack: Stack) -> None:
    response = await stack.api.put("/v1/playbooks/hello", content=HELLO_PLAYBOOK, headers=YAML)
    assert response.status_code == 201, response.text


async def source_rule(stack: Stack, origin: str, **settings: object) -> str:
    created = await stack.api.post(
        "/v1/sources",
        json={
            "origin": origin,
            "playbook_id": "hello",
            "distribution": "manual",
            "settings": settings,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def lead_from(
    stack: Stack, origin: str, *, consent_days: float | None, phone: str = LEAD
) -> str:
    """POST /v1/leads from `origin` with consent captured `consent_days` ago; the play's id."""
    lead: dict[str, object] = {
        "phone": phone,
        "first_name": "Ann",
        "originators": [{"origin": origin, "key": f"{origin}-{phone}"}],
    }
    if consent_days is not None:
        captured = now() - timedelta(days=consent_days)
        lead["consent"] = {"captured_at": captured.isoformat(), "source": origin}
    created = await stack.api.post("/v1/leads", json=lead)
    assert created.status_code == 201, created.text
    play = created.json()["play"]
    assert play is not None
    await stack.work()
    return str(play["id"])


async def play_log(stack: Stack, play_id: str) -> list[PlayLogPublic]:
    """The play's log as the API shows it, read two entries a page to walk the pages too."""
    entries: list[PlayLogPublic] = []
    after: int | None = None
    while True:
        params = {"limit": "2", **({"after": str(after)} if after is not None else {})}
        response = await stack.api.get(f"/v1/plays/{play_id}/log", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        entries += [PlayLogPublic.model_validate(entry) for entry in page["data"]]
        if page["next_after"] is None:
            return entries
        after = page["next_after"]


async def activities(stack: Stack, play_id: str) -> list[Activity]:
    async with stack.sessions() as session:
        query = select(Activity).where(Activity.play_id == play_id).order_by(col(Activity.id))
        return list((await session.exec(query)).all())


async def play_messages(stack: Stack, play_id: str) -> list[Message]:
    async with stack.sessions() as session:
        query = select(Message).where(Message.play_id == play_id).order_by(col(Message.created_at))
        return list((await session.exec(query)).all())
