"""Email steps end to end: POST a play, the worker renders and queues the email, `email.send`
hands it to a real SMTP server (aiosmtpd) or, without SMTP_URL, captures it; retries after a
4xx, a 550 fails it and on_failure decides the play."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import col, select

from gateway.models import Activity, Email, Play
from tests.support.stack import LEAD, Stack

from .conftest import Inbox

YAML = {"Content-Type": "application/yaml"}
PLAYBOOK = """\
name: Quote follow-up
settings:
  partner_name: null
on_failure: {on_failure}
email:
  from: "Acme Quotes <quotes@acme.test>"
  reply_to: "Jordan <jordan@acme.test>"
steps:
  - id: quote
    kind: send
    channel: email
    subject: "{{settings.partner_name}}: your quote, {{lead.first_name|there}}"
    body: |
      Hi {{lead.first_name|there}},
      your quote from {{settings.partner_name}} is ready.
  - id: tomorrow
    kind: send
    delay: 1d
    text: "Hi {{lead.first_name|there}}, did you see our email?"
"""


async def start(
    stack: Stack, *, on_failure: str = "halt", email: str | None = "ann@example.com"
) -> str:
    published = await stack.api.put(
        "/v1/playbooks/quote", content=PLAYBOOK.format(on_failure=on_failure), headers=YAML
    )
    assert published.status_code == 201, published.text
    lead: dict[str, Any] = {"phone": LEAD, "first_name": "Ann"}
    if email:
        lead["email"] = email
    created = await stack.api.post(
        "/v1/plays",
        json={"playbook_id": "quote", "lead": lead, "settings": {"partner_name": "Acme"}},
    )
    assert created.status_code == 201, created.text
    play_id: str = created.json()["id"]
    return play_id


async def the_email(stack: Stack, play_id: str) -> dict[str, Any]:
    listed = await stack.api.get("/v1/emails", params={"play_id": play_id})
    assert listed.status_code == 200, listed.text
    [email] = listed.json()["data"]
    return dict(email)


async def play_state(stack: Stack, play_id: str) -> tuple[str, list[str]]:
    async with stack.sessions() as session:
        play = await session.get(Play, play_id)
        labels = (
            await session.exec(
                select(Activity.label).where(Activity.play_id == play_id).order_by(col(Activity.id))
            )
        ).all()
    assert play is not None
    return str(play.state), list(labels)


def texts(stack: Stack) -> list[str]:
    return [r.get("Body") or "" for r in stack.creates(To=LEAD) if r.status == 201]


def followed_up(stack: Stack) -> bool:
    """The next day's text went out (an opt-out notice may be appended to a first text)."""
    [text] = texts(stack)
    return text.startswith("Hi Ann, did you see our email?")


async def test_email_is_delivered_over_smtp(stack: Stack, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    stack.settings.smtp_url = url
    play_id = await start(stack)
    await stack.work()

    [envelope] = inbox.envelopes
    assert envelope.mail_from == "quotes@acme.test"
    assert envelope.rcpt_tos == ["ann@example.com"]
    [message] = inbox.messages()
    assert message["From"] == "Acme Quotes <quotes@acme.test>"
    assert message["To"] == "ann@example.com"
    assert message["Reply-To"] == "Jordan <jordan@acme.test>"
    assert message["Subject"] == "Acme: your quote, Ann"
    content = message.get_content()
    assert content.startswith("Hi Ann,\nyour quote from Acme is ready.\n\n-- \n")
    # CAN-SPAM footer and RFC 8058 one-click headers (tests/email/test_unsubscribe.py)
    link = message["List-Unsubscribe"].strip("<>")
    assert f"Unsubscribe from Acme Lending's emails: {link}" in content
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    email = await the_email(stack, play_id)
    assert email["status"] == "sent" and email["attempts"] == 1
    assert email["message_id"] == message["Message-ID"]
    assert email["message_id"].endswith("@acme.test>")
    assert email["from"] == "Acme Quotes <quotes@acme.test>" and email["sent_at"] is not None
    assert texts(stack) == []  # the text waits a day
    await stack.sandbox.advance(24 * 3600 + 1)
    await stack.work()
    assert followed_up(stack)
    assert len(inbox.envelopes) == 1


async def test_a_4xx_is_retried_later(stack: Stack, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    stack.settings.smtp_url = url
    inbox.refuse_data.append("451 4.3.0 try again later")
    play_id = await start(stack)
    await stack.work()
    assert inbox.envelopes == []
    email = await the_email(stack, play_id)
    assert email["status"] == "queued" and email["attempts"] == 1
    assert email["smtp_code"] == 451 and "try again later" in email["error"]
    assert email["send_after"] is not None

    await stack.work()  # not due yet: nothing happens
    assert inbox.envelopes == []
    await stack.sandbox.advance(61)
    await stack.work()
    [message] = inbox.messages()
    email = await the_email(stack, play_id)
    assert email["status"] == "sent" and email["attempts"] == 2 and email["error"] is None
    assert message["Message-ID"] == email["message_id"]  # the same email, tried again


async def test_an_unreachable_server_is_retried(stack: Stack, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    stack.settings.smtp_url = "smtp://127.0.0.1:9"  # discard port: nothing listens
    play_id = await start(stack)
    await stack.work()
    email = await the_email(stack, play_id)
    assert email["status"] == "queued" and email["attempts"] == 1 and email["smtp_code"] is None
    stack.settings.smtp_url = url
    await stack.sandbox.advance(61)
    await stack.work()
    assert (await the_email(stack, play_id))["status"] == "sent"
    assert len(inbox.envelopes) == 1


async def test_550_fails_the_email_and_halts_the_play(
    stack: Stack, smtp: tuple[Inbox, str]
) -> None:
    inbox, url = smtp
    stack.settings.smtp_url = url
    inbox.refuse_rcpt.append("550 5.1.1 no such mailbox")
    play_id = await start(stack, on_failure="halt")
    await stack.work()
    email = await the_email(stack, play_id)
    assert email["status"] == "failed" and email["smtp_code"] == 550
    assert "no such mailbox" in email["error"] and email["attempts"] == 1
    assert await play_state(stack, play_id) == ("stopped", ["stopped"])
    await stack.sandbox.advance(24 * 3600 + 1)
    await stack.work()
    assert texts(stack) == [] and inbox.envelopes == []


async def test_550_with_skip_goes_on(stack: Stack, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    stack.settings.smtp_url = url
    inbox.refuse_rcpt.append("550 5.1.1 no such mailbox")
    play_id = await start(stack, on_failure="skip")
    await stack.work()
    assert (await the_email(stack, play_id))["status"] == "failed"
    assert await play_state(stack, play_id) == ("running", [])
    await stack.sandbox.advance(24 * 3600 + 1)
    await stack.work()
    assert followed_up(stack)


@pytest.mark.parametrize("on_failure", ["halt", "skip"])
async def test_a_lead_without_email_halts_or_skips(stack: Stack, on_failure: str) -> None:
    play_id = await start(stack, on_failure=on_failure, email=None)
    await stack.work()
    async with stack.sessions() as session:
        assert (await session.exec(select(Email))).all() == []
    await stack.sandbox.advance(24 * 3600 + 1)
    await stack.work()
    if on_failure == "halt":
        assert await play_state(stack, play_id) == ("stopped", ["stopped"])
        assert texts(stack) == []
    else:
        assert followed_up(stack)


async def test_without_smtp_the_email_is_captured_and_viewable(stack: Stack) -> None:
    assert stack.settings.smtp_url is None
    play_id = await start(stack)
    await stack.work()
    email = await the_email(stack, play_id)
    assert email["status"] == "captured" and email["attempts"] == 0
    assert email["to"] == "ann@example.com"
    assert email["from"] == "Acme Quotes <quotes@acme.test>"
    assert email["reply_to"] == "Jordan <jordan@acme.test>"
    assert email["subject"] == "Acme: your quote, Ann"
    assert email["body"].startswith("Hi Ann,\nyour quote from Acme is ready.\n\n-- \nAcme")
    assert "/unsubscribe/eml_" in email["body"]  # the captured body is what would be sent
    assert email["step_id"] == "quote" and email["message_id"]
    one = await stack.api.get(f"/v1/emails/{email['id']}")
    assert one.status_code == 200 and one.json() == email
    by_lead = await stack.api.get("/v1/emails", params={"lead_id": email["lead_id"]})
    assert [e["id"] for e in by_lead.json()["data"]] == [email["id"]]
    captured = await stack.api.get("/v1/emails", params={"status": "captured"})
    assert len(captured.json()["data"]) == 1
    await stack.work()  # a re-run changes nothing
    assert (await the_email(stack, play_id))["status"] == "captured"
