"""An email's unsubscribe link end to end: the footer (postal address, link) and RFC 8058
headers on a real email, the link followed by a plain HTTP client (no API key), the ledger
entry and export row it leaves, and the next email to that address not sent."""

from __future__ import annotations

import csv
import io

import httpx
from sqlmodel import col, select

from gateway.models import Email, OptOutEvent
from tests.support.stack import LEAD, Stack

from .conftest import Inbox

YAML = {"Content-Type": "application/yaml"}
ADDRESS = "1 Market St, San Francisco, CA 94105"
PLAYBOOK = """\
name: Two emails
email:
  from: "Acme Quotes <quotes@acme.test>"
steps:
  - id: first
    kind: send
    channel: email
    subject: "Your quote"
    body: "Hi {lead.first_name|there}, your quote is ready."
  - id: second
    kind: send
    channel: email
    delay: 1h
    subject: "Still there?"
    body: "Hi again."
"""


async def start(stack: Stack) -> str:
    patched = await stack.api.patch("/v1/account", json={"compliance": {"postal_address": ADDRESS}})
    assert patched.status_code == 200, patched.text
    published = await stack.api.put("/v1/playbooks/two", content=PLAYBOOK, headers=YAML)
    assert published.status_code == 201, published.text
    created = await stack.api.post(
        "/v1/plays",
        json={
            "playbook_id": "two",
            "lead": {"phone": LEAD, "first_name": "Ann", "email": "Ann@Example.com"},
        },
    )
    assert created.status_code == 201, created.text
    await stack.work()
    return str(created.json()["id"])


async def emails(stack: Stack) -> list[Email]:
    async with stack.sessions() as session:
        return list((await session.exec(select(Email).order_by(col(Email.created_at)))).all())


async def ledger(stack: Stack) -> list[OptOutEvent]:
    async with stack.sessions() as session:
        return list((await session.exec(select(OptOutEvent).order_by(col(OptOutEvent.id)))).all())


def link_in(body: str) -> str:
    [line] = [line for line in body.splitlines() if "/unsubscribe/" in line]
    return line.rsplit(" ", 1)[1]


async def test_the_link_unsubscribes_and_the_next_email_is_not_sent(stack: Stack) -> None:
    await start(stack)
    [first] = await emails(stack)
    assert first.status == "captured"
    assert ADDRESS in first.body and "Acme Lending" in first.body
    link = link_in(first.body)
    assert link.startswith(f"{stack.settings.public_base_url}/unsubscribe/{first.id}.")

    async with httpx.AsyncClient() as browser:  # a lead's browser: no API key
        page = await browser.get(link)
        assert page.status_code == 200 and "<form" in page.text and "Unsubscribe" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert await ledger(stack) == []  # a GET (a link scanner, a preview) changes nothing
        done = await browser.post(link, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        again = await browser.post(link, data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200  # a second click: same answer, one ledger entry

    [event] = await ledger(stack)
    assert (event.event, event.channel, event.source) == ("opt_out", "email", "unsubscribe_link")
    assert event.email == "ann@example.com" and event.phone == LEAD
    export = await stack.api.get("/v1/opt-outs/export", params={"format": "csv"})
    [row] = list(csv.DictReader(io.StringIO(export.text)))
    assert (row["channel"], row["source"], row["email"]) == (
        "email", "unsubscribe_link", "ann@example.com"
    )  # fmt: skip

    # The lead texts START: texts may resume, but the address stays unsubscribed from email.
    await stack.say("START")
    status = await stack.api.get(f"/v1/opt-outs/{LEAD}")
    assert status.json()["status"] != "opted_out"
    await stack.sandbox.advance(3600 + 1)
    await stack.work()
    sent = [e for e in await emails(stack) if e.status in ("captured", "sent")]
    assert [e.id for e in sent] == [first.id]
    for email in await emails(stack):
        if email.id != first.id:
            assert email.status == "blocked" and email.gate_reason == "opted_out"


async def test_one_click_post_from_the_header_blocks_a_queued_email(
    stack: Stack, smtp: tuple[Inbox, str]
) -> None:
    """RFC 8058: the mailbox provider POSTs the header's URL; no page. The gate honours it at
    once: an email already queued (here waiting for its retry) is not sent."""
    inbox, url = smtp
    stack.settings.smtp_url = url
    inbox.refuse_data.append("421 4.7.0 busy, try later")
    await start(stack)
    [queued] = await emails(stack)
    assert queued.status == "queued" and queued.attempts == 1
    link = link_in(queued.body)  # the body as it was handed to SMTP

    async with httpx.AsyncClient() as provider:
        answer = await provider.post(
            link,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 200
    await stack.sandbox.advance(61)
    await stack.work()
    [blocked] = [e for e in await emails(stack) if e.id == queued.id]
    assert blocked.status == "blocked" and blocked.gate_reason == "opted_out"
    assert inbox.envelopes == []


async def test_headers_name_the_same_link(stack: Stack, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    stack.settings.smtp_url = url
    await start(stack)
    [message] = inbox.messages()
    header = message["List-Unsubscribe"]
    assert header.startswith("<") and header.endswith(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert header[1:-1] == link_in(message.get_content())


async def test_forged_or_odd_links_change_nothing_and_echo_nothing(stack: Stack) -> None:
    await start(stack)
    [first] = await emails(stack)
    link = link_in(first.body)
    base, token = link.rsplit("/", 1)
    email_id, signature = token.split(".")
    forged = [
        f"{email_id}.{'A' * len(signature)}",  # right email, wrong signature
        f"eml_{'0' * 32}.{signature}",  # the signature of another email
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        f"{email_id}",
    ]
    async with httpx.AsyncClient() as client:
        for value in forged:
            for method in ("GET", "POST"):
                response = await client.request(
                    method, f"{base}/{value}", content=b"List-Unsubscribe=One-Click"
                )
                assert response.status_code == 404, (value, method)
                assert "script" not in response.text and email_id not in response.text
        wrong_body = await client.post(link, content=b"List-Unsubscribe=Nope")
        assert wrong_body.status_code == 400
        too_big = await client.post(link, content=b"x" * (5 * 1024))
        assert too_big.status_code == 413
    assert await ledger(stack) == []


async def test_publishing_email_steps_without_a_postal_address_warns(stack: Stack) -> None:
    published = await stack.api.put("/v1/playbooks/two", content=PLAYBOOK, headers=YAML)
    codes = {w["code"] for w in published.json()["account_warnings"]}
    assert "postal_address_unset" in codes
    await stack.api.patch("/v1/account", json={"compliance": {"postal_address": ADDRESS}})
    again = await stack.api.put("/v1/playbooks/two", content=PLAYBOOK, headers=YAML)
    assert "postal_address_unset" not in {w["code"] for w in again.json()["account_warnings"]}
