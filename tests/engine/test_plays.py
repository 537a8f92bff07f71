"""Plays end to end: the mortgage conversation with a scripted lead through the worker, the
sandbox and the real twilio client; catch-all levels; re-engagement; quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from gateway import leads
from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.db import transaction
from gateway.engine.starting import RunningPlayExists, start_play
from gateway.ids import new_id
from gateway.leads import LeadCreate, upsert_lead
from gateway.models import (
    Lead,
    Message,
    PlaybookRecord,
    PlaybookVersion,
    SourceRule,
)
from gateway.playbooks import parse_playbook
from tests.support.party_line import add_reps, drive, labels, play_row, texts_to
from tests.support.stack import LEAD, OUR_NUMBER, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SETTINGS = {"partner_name": "Acme Lending"}


async def publish(stack: Stack, name: str) -> str:
    return await publish_text(stack, name, (EXAMPLES / f"{name}.yaml").read_text())


async def begin(stack: Stack, playbook_id: str, phone: str = LEAD) -> str:
    async with transaction(stack.sessions) as session:
        await lock_contact(session, stack.account_id, phone)  # as `start_play` asks
        lead = Lead(id=new_id("lead"), account_id=stack.account_id, phone=phone, first_name="Ann")
        session.add(lead)
        await session.flush()
        play = await start_play(session, lead=lead, playbook_id=playbook_id, settings=SETTINGS)
    return play.id


async def test_mortgage_conversation_to_textback(stack: Stack) -> None:
    await publish(stack, "mortgage-qualification")
    play_id = await begin(stack, "mortgage-qualification")
    await stack.work()
    [intro] = texts_to(stack)
    assert intro.startswith("Hi Ann, it's Sam with Acme Lending.")
    await stack.say("Yes!")
    await stack.say("about 350k")
    await stack.say("2")
    await stack.say("text please")
    sent = texts_to(stack)
    assert len(sent) == 5
    assert sent[1].startswith("Great! Roughly how much")
    assert sent[-1] == "Sounds good, Sam will text you shortly!"
    play = await play_row(stack, play_id)
    assert play.state == "has_outcome" and play.outcome == "textback_requested"
    assert play.answers["loan_amount"] == 350000
    assert await labels(stack, play_id) == [
        "started",
        "interested",
        "textback_requested",
        "completed",
    ]
    async with stack.sessions() as session:
        lead = (await session.exec(select(Lead))).one()
    assert lead.additional_info["loan_amount"] == 350000


async def test_not_interested_is_unqualified(stack: Stack) -> None:
    await publish(stack, "mortgage-qualification")
    play_id = await begin(stack, "mortgage-qualification")
    await stack.work()
    await stack.say("no thanks")
    play = await play_row(stack, play_id)
    assert play.outcome == "unqualified"
    assert await labels(stack, play_id) == ["started", "unqualified", "completed"]


async def test_catch_all_levels_then_a_human(stack: Stack) -> None:
    await publish(stack, "mortgage-qualification")
    play_id = await begin(stack, "mortgage-qualification")
    await stack.work()
    for text in ("banana", "what?", "purple"):
        await stack.say(text)
    sent = texts_to(stack)
    assert sent[1] == "Sorry, I didn't quite get that. A quick YES or NO works!"
    assert sent[2].startswith("Sorry, still not sure what you mean.")
    assert sent[3] == "No problem, Sam will text you personally in a few minutes."
    assert await labels(stack, play_id) == [
        "started",
        "catch_all_level1",
        "catch_all_level2",
        "catch_all_level3",
        "talk_to_human",
    ]
    play = await play_row(stack, play_id)
    assert play.paused and play.state == "running"
    await stack.say("yes")  # a human has the conversation now: the play stays quiet
    assert len(texts_to(stack)) == 4


async def test_reengagement_after_silence(stack: Stack) -> None:
    await publish(stack, "mortgage-qualification")
    play_id = await begin(stack, "mortgage-qualification")
    await stack.work()
    for _ in range(3):  # two nudges at most, 24 h apart
        await stack.sandbox.advance(24 * 3600 + 60)
        await stack.work()
    sent = texts_to(stack)
    assert len(sent) == 3
    assert "Still happy to help with a home loan" in sent[1]
    assert await labels(stack, play_id) == ["started", "reengagement_sent", "reengagement_sent"]


async def test_opt_out_mid_conversation_ends_the_play(stack: Stack) -> None:
    await publish(stack, "mortgage-qualification")
    play_id = await begin(stack, "mortgage-qualification")
    await stack.work()
    await stack.say("STOP")
    play = await play_row(stack, play_id)
    assert play.state == "opted_out"
    assert await labels(stack, play_id) == ["started", "opted_out"]


async def test_play_started_at_night_texts_at_eight(stack: Stack) -> None:
    await publish(stack, "mortgage-qualification")
    # 21:00 in San Francisco.
    await stack.sandbox.advance((datetime(2026, 11, 19, 5, 0, tzinfo=UTC) - now()).total_seconds())
    await begin(stack, "mortgage-qualification")
    await stack.work()
    assert texts_to(stack) == []
    async with stack.sessions() as session:
        message = (await session.exec(select(Message))).one()
    eight = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)  # 08:00 PST
    assert message.send_after == eight and message.gate_reason == "quiet_hours"
    await stack.sandbox.advance((eight - now()).total_seconds() + 1)
    await stack.work()
    [intro] = stack.creates(To=LEAD)
    assert intro.at >= eight - timedelta(seconds=1)


LANDLINE_PLAYBOOK = """
name: Two texts
settings: {{partner_name: null}}
on_failure: {on_failure}
steps:
  - id: hello
    kind: send
    text: "Hi {{lead.first_name|there}}, it's {{settings.partner_name}}. Reply STOP to opt out."
  - id: later
    kind: send
    delay: 1h
    text: "Still there? {{settings.partner_name}}"
"""


async def publish_text(stack: Stack, name: str, text: str) -> str:
    playbook = parse_playbook(text)
    async with transaction(stack.sessions) as session:
        session.add(
            PlaybookRecord(
                account_id=stack.account_id, id=name, name=playbook.name, latest_version=1
            )
        )
        session.add(
            PlaybookVersion(
                account_id=stack.account_id,
                playbook_id=name,
                version=1,
                document=text,
                format="yaml",
                definition=playbook.model_dump(mode="json", by_alias=True),
            )
        )
    return name


async def test_landline_lead_on_failure_halt(stack: Stack) -> None:
    landline = "+14155550177"
    stack.sandbox.phones.script(landline, line_type="landline")
    await publish_text(stack, "two", LANDLINE_PLAYBOOK.format(on_failure="halt"))
    play_id = await begin(stack, "two", phone=landline)
    await stack.work()
    play = await play_row(stack, play_id)
    assert play.state == "stopped"
    assert await labels(stack, play_id) == ["started", "stopped"]
    await stack.sandbox.advance(2 * 3600)
    await stack.work()
    assert len(stack.creates(To=landline)) == 1  # nothing after the failure


async def test_landline_lead_on_failure_skip(stack: Stack) -> None:
    landline = "+14155550177"
    stack.sandbox.phones.script(landline, line_type="landline")
    await publish_text(stack, "two", LANDLINE_PLAYBOOK.format(on_failure="skip"))
    play_id = await begin(stack, "two", phone=landline)
    await stack.work()
    assert (await play_row(stack, play_id)).state == "running"  # skipped, goes on
    await stack.sandbox.advance(3600 + 60)
    await stack.work()
    # The second text fails at once (the phone is flagged as a landline): skipped too, and the
    # play reaches its end (at the next sweep) without texting the landline again.
    await stack.work()
    assert len(stack.creates(To=landline)) == 1
    play = await play_row(stack, play_id)
    assert play.state == "stopped"
    assert await labels(stack, play_id) == ["started", "stopped"]
    async with stack.sessions() as session:
        statuses = (
            await session.exec(select(Message.status).order_by(col(Message.created_at)))
        ).all()
    assert list(statuses) == ["undelivered", "failed"]


async def test_a_reply_halts_the_drip(stack: Stack) -> None:
    await publish(stack, "insurance-xdate")
    await publish(stack, "insurance-quote-drip")
    async with transaction(stack.sessions) as session:
        lead = Lead(id=new_id("lead"), account_id=stack.account_id, phone=LEAD, first_name="Ann")
        session.add(lead)
        await session.flush()
        play = await start_play(
            session,
            lead=lead,
            playbook_id="insurance-quote-drip",
            settings={"partner_name": "Acme Insurance", "agency_phone": "555-0100"},
        )
    await stack.work()
    assert len(texts_to(stack)) == 1
    await stack.say("thanks, call me tomorrow")
    assert (await play_row(stack, play.id)).state == "stopped"
    assert (await labels(stack, play.id))[-1] == "stopped"
    await stack.sandbox.advance(2 * 24 * 3600)
    await stack.work()
    assert len(texts_to(stack)) == 1  # no more drip texts after the reply


async def test_mortgage_conversation_to_rep_unsuccessful_after_a_call(stack: Stack) -> None:
    """The lead asks for a call; no rep takes it and the lead declines a callback: the play
    ends with outcome `rep_unsuccessful` (gateway/playbooks/README.md), not the `qualified`
    step after the call, and `interested` (said twice) is recorded once."""
    await publish(stack, "mortgage-qualification")
    reps = await add_reps(stack, 2, answer=False)
    async with transaction(stack.sessions) as session:
        rule = SourceRule(
            id=new_id("src"),
            account_id=stack.account_id,
            origin="Zillow",
            playbook_id="mortgage-qualification",
            rep_ids=reps,
        )
        session.add(rule)
    stack.sandbox.phones.script(LEAD, digits=["", ""])  # no keypress at either prompt
    async with transaction(stack.sessions) as session:
        lead = Lead(id=new_id("lead"), account_id=stack.account_id, phone=LEAD, first_name="Ann")
        session.add(lead)
        await session.flush()
        play = await start_play(
            session,
            lead=lead,
            playbook_id="mortgage-qualification",
            settings=SETTINGS,
            source_rule_id=rule.id,
        )
    await stack.work()
    for reply in ("yes", "400k", "1", "call me now"):
        await stack.say(reply)
    await drive(stack)
    final = await play_row(stack, play.id)
    assert (final.state, final.outcome) == ("has_outcome", "rep_unsuccessful")
    got = await labels(stack, play.id)
    assert got[:2] == ["started", "interested"]
    assert got.count("interested") == 1
    assert got[-3:] == ["party_line_rep_unsuccessful", "rep_unsuccessful", "completed"]
    assert final.answers["loan_amount"] == 400000


async def test_a_reply_whose_job_was_lost_is_found_by_the_sweep(stack: Stack) -> None:
    """Redis is flushed after the reply arrived and before its job ran: nothing is lost."""
    await publish(stack, "mortgage-qualification")
    play_id = await begin(stack, "mortgage-qualification")
    await stack.work()
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "yes")
    await stack.sandbox.settle()
    await stack.api_redis.flushdb()  # the plays.reply job is gone
    await stack.sandbox.advance(60)  # past the grace the sweep gives a job of its own
    await stack.work()
    assert await labels(stack, play_id) == ["started", "interested"]
    assert len(texts_to(stack)) == 2


async def test_a_lead_new_to_the_transaction_is_looked_up_once_it_has_a_play(stack: Stack) -> None:
    """`start_play` skips the look for a running play when the request created the lead (a new
    lead has none), and only until a play is started for it."""
    await publish(stack, "mortgage-qualification")
    lead_in = LeadCreate.model_validate({"phone": LEAD, "first_name": "Ann"})
    async with transaction(stack.sessions) as session:
        await lock_contact(session, stack.account_id, LEAD)
        lead = await upsert_lead(session, stack.account_id, lead_in)
        assert leads.playless(session, lead)
        play = await start_play(
            session, lead=lead, playbook_id="mortgage-qualification", settings=SETTINGS
        )
        assert not leads.playless(session, lead)
        # Without the mark's removal this would skip the look and fail at the unique index.
        with pytest.raises(RunningPlayExists) as raised:
            await start_play(
                session, lead=lead, playbook_id="mortgage-qualification", settings=SETTINGS
            )
        assert raised.value.play_id == play.id
    async with transaction(stack.sessions) as session:
        found = await upsert_lead(session, stack.account_id, lead_in)  # found, not created
        assert found.id == lead.id and not leads.playless(session, found)
        with pytest.raises(RunningPlayExists):
            await start_play(
                session, lead=found, playbook_id="mortgage-qualification", settings=SETTINGS
            )
