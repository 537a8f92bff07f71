"""The scripted scenario of the callback drill and its normalized snapshot.

One scenario touches every Twilio webhook the gateway takes: a texted conversation to an
outcome (inbound SMS, SMS status callbacks), a STOP (opt-out), and a party line (call status,
AMD, conference events, the rep's Gather action), with every activity delivered to a customer
receiver. It runs twice on one stack, on two sets of phones (`Cast`): clean, then with the
sandbox duplicating, reordering and delaying its callbacks. The snapshot names rows by role
("lead_a", "rep") instead of ids and phones, so the two runs compare equal when the final
states are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from gateway.db import transaction
from gateway.engine.starting import start_play
from gateway.ids import new_id
from gateway.models import (
    Activity,
    Lead,
    Message,
    OptOutEvent,
    PartyLineRecord,
    Play,
    SourceRule,
    WebhookDelivery,
)
from tests.support.party_line import drive
from tests.support.stack import OUR_NUMBER, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MORTGAGE = "mortgage-qualification"
CONVERSATION = ("Yes!", "about 350k", "2", "text please")


@dataclass(frozen=True)
class Cast:
    """The phones of one run: two texted leads, a called lead and a rep."""

    lead_a: str
    lead_b: str
    lead_c: str
    rep: str
    origin: str

    def roles(self) -> dict[str, str]:
        return {"lead_a": self.lead_a, "lead_b": self.lead_b, "lead_c": self.lead_c}


async def publish_mortgage(stack: Stack) -> None:
    document = (EXAMPLES / f"{MORTGAGE}.yaml").read_text()
    response = await stack.api.put(
        f"/v1/playbooks/{MORTGAGE}",
        content=document,
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text


async def start(stack: Stack, phone: str, playbook_id: str, rule_id: str | None = None) -> str:
    async with transaction(stack.sessions) as session:
        lead = Lead(id=new_id("lead"), account_id=stack.account_id, phone=phone, first_name="Ann")
        session.add(lead)
        await session.flush()
        play = await start_play(
            session,
            lead=lead,
            playbook_id=playbook_id,
            settings={"partner_name": "Acme Lending"},
            source_rule_id=rule_id,
        )
    return play.id


async def _say(stack: Stack, phone: str, text: str) -> None:
    stack.sandbox.send_sms(phone, OUR_NUMBER, text)
    await drive(stack)


async def run_scenario(stack: Stack, cast: Cast) -> str:
    """The scenario on `cast`'s phones (playbooks `mortgage-qualification` and `call-now`
    published); returns the rep's id."""
    created = await stack.api.post("/v1/reps", json={"name": "Rep", "phone": cast.rep})
    assert created.status_code == 201, created.text
    rep_id: str = created.json()["id"]
    stack.sandbox.phones.script(cast.rep, digits=["1"], hangup_after=60.0)
    async with transaction(stack.sessions) as session:
        rule = SourceRule(
            id=new_id("src"),
            account_id=stack.account_id,
            origin=cast.origin,
            playbook_id="call-now",
            rep_ids=[rep_id],
        )
        session.add(rule)
    await start(stack, cast.lead_a, MORTGAGE)
    await start(stack, cast.lead_b, MORTGAGE)
    await drive(stack)
    for text in CONVERSATION:
        await _say(stack, cast.lead_a, text)
    await _say(stack, cast.lead_b, "STOP")
    await start(stack, cast.lead_c, "call-now", rule.id)
    await drive(stack)
    await drive(stack)  # the last webhook deliveries and anything a late callback started
    return rep_id


async def snapshot(stack: Stack, cast: Cast, rep_id: str) -> dict[str, Any]:
    """The final state of `cast`'s rows, by role, without ids, phones or times."""
    state: dict[str, Any] = {}
    async with stack.sessions() as session:
        for role, phone in cast.roles().items():
            lead = (
                await session.exec(
                    select(Lead).where(Lead.account_id == stack.account_id, Lead.phone == phone)
                )
            ).one()
            plays = (await session.exec(select(Play).where(Play.lead_id == lead.id))).all()
            state[role] = {
                "lead": (lead.phone_status, lead.additional_info),
                "plays": [await _play(session, play, rep_id) for play in plays],
                "messages": sorted(
                    (m.direction, m.purpose, m.body, m.status, m.error_code, m.notice_decision)
                    for m in (
                        await session.exec(select(Message).where(Message.lead_phone == phone))
                    ).all()
                ),
                "opt_outs": sorted(
                    (e.event, e.channel, e.source, e.keyword, e.text, e.rule)
                    for e in (
                        await session.exec(select(OptOutEvent).where(OptOutEvent.phone == phone))
                    ).all()
                ),
            }
    return state


async def _play(session: Any, play: Play, rep_id: str) -> dict[str, Any]:
    activities = (
        await session.exec(
            select(Activity).where(Activity.play_id == play.id).order_by(col(Activity.id))
        )
    ).all()
    deliveries = (
        await session.exec(
            select(WebhookDelivery)
            .where(col(WebhookDelivery.activity_id).in_([a.id for a in activities]))
            .order_by(col(WebhookDelivery.activity_id))
        )
    ).all()
    labels = {a.id: a.label for a in activities}
    lines = (
        await session.exec(
            select(PartyLineRecord)
            .where(PartyLineRecord.play_id == play.id)
            .order_by(col(PartyLineRecord.created_at))
        )
    ).all()
    return {
        "play": (play.playbook_id, play.state, play.outcome, play.answers, play.step_id),
        "flags": (play.started, play.paused, play.catch_all_level, play.reengagements_sent),
        "activities": [(a.type, a.label) for a in activities],
        "deliveries": [(labels[d.activity_id], d.status, d.attempts) for d in deliveries],
        "party_lines": [_party_line(row, rep_id) for row in lines],
    }


def _party_line(row: PartyLineRecord, rep_id: str) -> dict[str, Any]:
    def leg(data: dict[str, Any]) -> tuple[Any, ...]:
        return (
            data.get("leg"),
            data.get("status"),
            data.get("result"),
            data.get("answered_by"),
        )

    return {
        "phase": row.phase,
        "end_reason": row.end_reason,
        "rep": "rep" if row.connected_rep_id == rep_id else row.connected_rep_id,
        "lead_legs": [leg(item) for item in row.state["lead_legs"]],
        "rep_legs": [leg(item) for item in row.state["rep_legs"]],
    }
