"""The insurance-quote drip (text now, email in 1 hour, text next day, then the X-date
playbook) in virtual time, and what an SMS STOP mid-drip does to it: texts stop; the email goes
on only when the playbook says `email_after_opt_out: true`."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import col, select

from gateway.models import Activity, Email, Message, Play, PlayLog
from tests.support.stack import LEAD, Stack

from .conftest import Inbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = {"Content-Type": "application/yaml"}
HOUR, DAY = 3600, 24 * 3600
SETTINGS = {"partner_name": "Acme Insurance", "agency_phone": "(415) 555-0100"}


async def publish(stack: Stack, *, email_after_opt_out: bool) -> None:
    for name in ("insurance-xdate", "insurance-quote-drip"):
        text = (EXAMPLES / f"{name}.yaml").read_text()
        if email_after_opt_out:
            text = text.replace("email_after_opt_out: false", "email_after_opt_out: true")
        response = await stack.api.put(f"/v1/playbooks/{name}", content=text, headers=YAML)
        assert response.status_code == 201, response.text


async def start(stack: Stack) -> str:
    created = await stack.api.post(
        "/v1/plays",
        json={
            "playbook_id": "insurance-quote-drip",
            "lead": {"phone": LEAD, "first_name": "Ann", "email": "ann@example.com"},
            "settings": SETTINGS,
        },
    )
    assert created.status_code == 201, created.text
    play_id: str = created.json()["id"]
    await stack.work()
    return play_id


async def later(stack: Stack, seconds: float) -> None:
    await stack.sandbox.advance(seconds)
    await stack.work()


async def plays(stack: Stack) -> list[Play]:
    async with stack.sessions() as session:
        return list((await session.exec(select(Play).order_by(col(Play.created_at)))).all())


async def play_texts(stack: Stack, play_id: str) -> list[Message]:
    """The play's own texts (not the STOP confirmation) that reached Twilio."""
    async with stack.sessions() as session:
        rows = await session.exec(
            select(Message).where(Message.play_id == play_id).order_by(col(Message.created_at))
        )
        return [m for m in rows.all() if m.twilio_sid is not None]


async def emails(stack: Stack) -> list[Email]:
    async with stack.sessions() as session:
        return list((await session.exec(select(Email))).all())


async def labels(stack: Stack, play_id: str) -> list[str]:
    async with stack.sessions() as session:
        rows = await session.exec(
            select(Activity.label).where(Activity.play_id == play_id).order_by(col(Activity.id))
        )
        return list(rows.all())


async def test_the_drip_texts_emails_an_hour_later_then_texts_and_moves_on(
    stack: Stack,
) -> None:
    await publish(stack, email_after_opt_out=False)
    play_id = await start(stack)
    assert [m.step_id for m in await play_texts(stack, play_id)] == ["welcome"]
    await later(stack, HOUR - 60)
    assert await emails(stack) == []  # not before the hour
    await later(stack, 61)
    [email] = await emails(stack)
    assert email.status == "captured" and email.from_address == "Quotes <quotes@example.com>"
    assert email.subject == "Acme Insurance: your insurance quote"
    assert "call me at (415) 555-0100" in email.body
    await later(stack, DAY + 1)
    assert [m.step_id for m in await play_texts(stack, play_id)] == ["welcome", "next_day"]
    await later(stack, 2 * DAY + 1)
    first, follow = await plays(stack)
    assert first.id == play_id and first.state == "stopped"
    assert follow.playbook_id == "insurance-xdate" and follow.state == "running"


async def test_stop_mid_drip_ends_it_when_email_does_not_continue(stack: Stack) -> None:
    await publish(stack, email_after_opt_out=False)
    play_id = await start(stack)
    await stack.say("STOP")
    [play] = await plays(stack)
    assert play.state == "opted_out"
    for _ in range(3):
        await later(stack, DAY)
    assert await emails(stack) == []
    assert [m.step_id for m in await play_texts(stack, play_id)] == ["welcome"]
    assert [p.id for p in await plays(stack)] == [play_id]  # no X-date play either
    assert await labels(stack, play_id) == ["started", "opted_out"]


async def test_stop_mid_drip_stops_texts_and_email_continues(
    stack: Stack, smtp: tuple[Inbox, str]
) -> None:
    inbox, url = smtp
    stack.settings.smtp_url = url
    await publish(stack, email_after_opt_out=True)
    play_id = await start(stack)
    await stack.say("STOP")
    [play] = await plays(stack)
    assert play.state == "running"  # for its emails only
    assert await labels(stack, play_id) == ["started", "opted_out"]

    await later(stack, HOUR + 1)
    [message] = inbox.messages()
    assert message["To"] == "ann@example.com"
    assert message["Subject"] == "Acme Insurance: your insurance quote"
    [email] = await emails(stack)
    assert email.status == "sent"

    await later(stack, DAY + 1)  # the next-day text is passed over
    await later(stack, 2 * DAY + 1)  # and the X-date hand-off ends the play instead
    assert [m.step_id for m in await play_texts(stack, play_id)] == ["welcome"]
    [play] = await plays(stack)
    assert play.state == "opted_out" and play.ended_at is not None
    assert await labels(stack, play_id) == ["started", "opted_out"]
    assert len(inbox.envelopes) == 1
    async with stack.sessions() as session:
        skipped = await session.exec(
            select(PlayLog.step_id).where(PlayLog.play_id == play_id, PlayLog.kind == "skipped")
        )
        assert list(skipped.all()) == ["next_day"]


async def test_an_email_queued_before_the_stop_is_blocked_without_continuation(
    stack: Stack, smtp: tuple[Inbox, str]
) -> None:
    """The gate decides when the email leaves, not when it was queued."""
    inbox, url = smtp
    stack.settings.smtp_url = url
    inbox.refuse_data.append("421 4.7.0 busy, try later")
    await publish(stack, email_after_opt_out=False)
    await start(stack)
    await later(stack, HOUR + 1)
    [email] = await emails(stack)
    assert email.status == "queued" and email.attempts == 1  # waiting for its retry
    await stack.say("STOP")
    await later(stack, 61)
    [email] = await emails(stack)
    assert email.status == "blocked" and email.gate_reason == "opted_out"
    assert inbox.envelopes == []
