"""Helpers for the party-line end-to-end tests: a call-now playbook, reps, a source rule,
plays on scripted leads, and driving the worker and the sandbox until the calls are over."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from gateway.db import transaction
from gateway.engine.starting import start_play
from gateway.ids import new_id
from gateway.models import (
    Activity,
    Lead,
    PartyLineRecord,
    Play,
    PlaybookRecord,
    PlaybookVersion,
    SourceRule,
)
from gateway.playbooks import parse_playbook
from tests.support.stack import LEAD, Stack

PLAYBOOK = """\
name: Call now
settings:
  partner_name: null
steps:
  - id: call
    kind: call
    whisper: "New lead {lead.first_name|(no name given)} from Zillow. Press 1 to connect."
  - id: sorry
    kind: send
    text: "Sorry we missed you! {settings.partner_name} will text you shortly."
"""
REP_PHONES = [f"+1415555014{i}" for i in range(10)]
MAX_ROUNDS = 12


async def publish_call_now(stack: Stack) -> str:
    playbook = parse_playbook(PLAYBOOK)
    async with transaction(stack.sessions) as session:
        session.add(
            PlaybookRecord(
                account_id=stack.account_id, id="call-now", name="Call now", latest_version=1
            )
        )
        session.add(
            PlaybookVersion(
                account_id=stack.account_id,
                playbook_id="call-now",
                version=1,
                document=PLAYBOOK,
                format="yaml",
                definition=playbook.model_dump(mode="json", by_alias=True),
            )
        )
    return "call-now"


async def add_reps(stack: Stack, count: int, **script: Any) -> list[str]:
    """`count` reps through the API, each phone scripted to answer and press 1."""
    ids = []
    for i in range(count):
        phone = REP_PHONES[i]
        created = await stack.api.post("/v1/reps", json={"name": f"Rep {i + 1}", "phone": phone})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
        stack.sandbox.phones.script(phone, **{"digits": ["1"], "hangup_after": 60.0, **script})
    return ids


async def add_rule(stack: Stack, rep_ids: list[str]) -> str:
    async with transaction(stack.sessions) as session:
        rule = SourceRule(
            id=new_id("src"),
            account_id=stack.account_id,
            origin="Zillow",
            playbook_id="call-now",
            rep_ids=rep_ids,
        )
        session.add(rule)
    return rule.id


async def begin(
    stack: Stack,
    phone: str = LEAD,
    *,
    rule_id: str | None = None,
    settings: dict[str, Any] | None = None,
    **script: Any,
) -> str:
    """A running play of call-now on a new lead whose phone follows `script`."""
    if script:
        stack.sandbox.phones.script(phone, **script)
    async with transaction(stack.sessions) as session:
        lead = Lead(id=new_id("lead"), account_id=stack.account_id, phone=phone, first_name="Ann")
        session.add(lead)
        await session.flush()
        play = await start_play(
            session,
            lead=lead,
            playbook_id="call-now",
            settings={"partner_name": "Acme Lending", **(settings or {})},
            source_rule_id=rule_id,
        )
    return play.id


async def party_lines(stack: Stack, play_id: str) -> list[PartyLineRecord]:
    async with stack.sessions() as session:
        rows = (
            await session.exec(
                select(PartyLineRecord)
                .where(PartyLineRecord.play_id == play_id)
                .order_by(col(PartyLineRecord.created_at))
            )
        ).all()
    return list(rows)


async def drive(stack: Stack, rounds: int = MAX_ROUNDS) -> None:
    """Worker, then sandbox, until a round changes nothing (bounded)."""
    seen = -1
    for _ in range(rounds):
        await stack.work()
        traffic = len(list(stack.sandbox.record))  # every REST request and callback so far
        if traffic == seen:
            return
        seen = traffic


async def labels(stack: Stack, play_id: str) -> list[str]:
    async with stack.sessions() as session:
        rows = (
            await session.exec(
                select(Activity.label).where(Activity.play_id == play_id).order_by(col(Activity.id))
            )
        ).all()
    return list(rows)


async def play_row(stack: Stack, play_id: str) -> Play:
    async with stack.sessions() as session:
        play = await session.get(Play, play_id)
    assert play is not None
    return play


def texts_to(stack: Stack, phone: str = LEAD) -> list[str]:
    return [r.get("Body") or "" for r in stack.creates(To=phone) if r.status == 201]


def calls_to(stack: Stack, phone: str) -> list[Any]:
    return [r for r in stack.sandbox.record.requests("calls.create", To=phone) if r.status == 201]
