"""Plays tell the truth, end to end through the HTTP API, the worker and the sandbox (issue 16,
items 1 and 2): a blocked first text ends the play (with its activity, its webhook and a log
entry) instead of leaving it `running` for ever; a deferral is in the play log with its reason
and time; a party line's end gives the play the outcome gateway/playbooks/README.md promises,
whether a call step or the API started it; a choice's event is recorded once per play."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from gateway.clock import now
from gateway.models import Activity, WebhookDelivery
from tests.support.party_line import add_reps, drive
from tests.support.sql import statements
from tests.support.stack import Hooks, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = {"Content-Type": "application/yaml"}
HAWAII = "+18085550145"  # the opted-out lead
TOLL_FREE = "+18005550411"  # no time zone can be known for it
LEAD2 = "+14155550124"  # San Francisco


async def publish_mortgage(stack: Stack) -> None:
    body = (EXAMPLES / "mortgage-qualification.yaml").read_text()
    response = await stack.api.put(
        "/v1/playbooks/mortgage-qualification", content=body, headers=YAML
    )
    assert response.status_code == 201, response.text


async def start(stack: Stack, phone: str) -> dict[str, Any]:
    created = await stack.api.post(
        "/v1/plays",
        json={
            "playbook_id": "mortgage-qualification",
            "lead": {"phone": phone, "first_name": "Ann"},
            "settings": {"partner_name": "Acme Lending"},
        },
    )
    assert created.status_code == 201, created.text
    play: dict[str, Any] = created.json()
    assert play["state"] == "running"
    return play


async def play_of(stack: Stack, play_id: str) -> dict[str, Any]:
    shown = await stack.api.get(f"/v1/plays/{play_id}")
    assert shown.status_code == 200, shown.text
    body: dict[str, Any] = shown.json()
    return body


async def delivered_labels(stack: Stack, play_id: str) -> list[str]:
    """The play's activities that have a delivered webhook delivery row."""
    async with stack.sessions() as session:
        rows = (
            await session.exec(
                select(Activity.label, WebhookDelivery.status)
                .join(WebhookDelivery, col(WebhookDelivery.activity_id) == col(Activity.id))
                .where(Activity.play_id == play_id)
                .order_by(col(Activity.id))
            )
        ).all()
    return [label for label, status in rows if status == "delivered"]


async def test_an_opted_out_leads_play_ends_opted_out(stack: Stack, hooks: Hooks) -> None:
    await publish_mortgage(stack)
    await stack.say("STOP", HAWAII)  # the lead opted out before any play
    play = await start(stack, HAWAII)
    await stack.work()  # the first text meets the opt-out
    await stack.work()  # the activity's webhook
    # Only the STOP's confirmation ever went to the lead.
    assert all("Hi Ann" not in (r.get("Body") or "") for r in stack.creates(To=HAWAII))
    shown = await play_of(stack, play["id"])
    assert (shown["state"], shown["waiting_reply"]) == ("opted_out", False)
    assert [a["label"] for a in shown["activities"]] == ["opted_out"]
    [blocked] = [m for m in shown["messages"] if m["status"] == "blocked"]
    entries = await stack.log(play["id"])
    [gate] = [e for e in entries if e["kind"] == "blocked"]
    assert gate["detail"]["reason"] == "opted_out"
    assert gate["detail"]["message_id"] == blocked["id"]
    assert [e["detail"]["state"] for e in entries if e["kind"] == "state"] == [
        "running",
        "opted_out",
    ]
    assert hooks.labels(play["id"]) == ["opted_out"]
    assert await delivered_labels(stack, play["id"]) == ["opted_out"]


async def test_a_toll_free_leads_play_ends_stopped_with_the_reason(
    stack: Stack, hooks: Hooks
) -> None:
    await publish_mortgage(stack)
    play = await start(stack, TOLL_FREE)
    await stack.work()
    await stack.work()
    assert stack.creates(To=TOLL_FREE) == []
    shown = await play_of(stack, play["id"])
    assert (shown["state"], shown["waiting_reply"]) == ("stopped", False)
    [stopped] = shown["activities"]
    assert stopped["label"] == "stopped"
    assert stopped["note"].startswith("time_zone_unknown")
    entries = await stack.log(play["id"])
    [gate] = [e for e in entries if e["kind"] == "blocked"]
    assert (gate["detail"]["reason"], gate["detail"]["channel"]) == ("time_zone_unknown", "sms")
    [ended] = [e for e in entries if e["kind"] == "state" and e["detail"]["state"] == "stopped"]
    assert ended["detail"]["why"].startswith("time_zone_unknown")
    assert hooks.labels(play["id"]) == ["stopped"]
    assert await delivered_labels(stack, play["id"]) == ["stopped"]


async def test_a_quiet_hours_deferral_is_in_the_play_log_once(stack: Stack) -> None:
    await publish_mortgage(stack)
    night = datetime(2026, 11, 19, 5, 0, tzinfo=UTC)  # 21:00 in San Francisco
    await stack.sandbox.advance((night - now()).total_seconds())
    play = await start(stack, LEAD2)
    await stack.work()
    eight = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)  # 08:00 PST
    # Hours of sweeps in the night look at the waiting text again: still one decision.
    for _ in range(3):
        await stack.sandbox.advance(3 * 3600)
        await stack.work()
    assert stack.creates(To=LEAD2) == []
    [deferred] = [e for e in await stack.log(play["id"]) if e["kind"] == "deferred"]
    assert deferred["detail"]["reason"] == "quiet_hours"
    assert deferred["detail"]["channel"] == "sms"
    assert datetime.fromisoformat(deferred["detail"]["until"]) == eight
    assert deferred["detail"]["message_id"]
    assert (await play_of(stack, play["id"]))["state"] == "running"
    await stack.sandbox.advance((eight - now()).total_seconds() + 1)
    await stack.work()
    assert len(stack.creates(To=LEAD2)) == 1
    entries = await stack.log(play["id"])
    assert len([e for e in entries if e["kind"] == "deferred"]) == 1


CONNECTICUT = "+12035550123"  # New Haven: America/New_York, contact from 09:00 (state rule)
FLORIDA = "+13055550123"  # Miami: America/New_York, 3 initiated contacts per 24 hours


async def before_connecticuts_hours(stack: Stack) -> datetime:
    """08:30 in New Haven: inside the account's 08:00-20:00, before Connecticut's 09:00."""
    await stack.sandbox.advance(
        (datetime(2026, 11, 19, 13, 30, tzinfo=UTC) - now()).total_seconds()
    )
    return datetime(2026, 11, 19, 14, 0, tzinfo=UTC)  # 09:00 EST


async def after_floridas_cap(stack: Stack) -> datetime:
    """Three texts to the Florida lead first: the play's text would be a fourth within 24 h,
    so it waits until the first of them is 24 hours old."""
    first = now()
    for n in range(3):
        sent = await stack.api.post("/v1/messages", json={"phone": FLORIDA, "body": f"Offer {n}"})
        assert sent.status_code == 201, sent.text
    await stack.work()
    assert len(stack.creates(To=FLORIDA)) == 3
    return first + timedelta(hours=24)


def play_texts(stack: Stack, phone: str) -> list[Any]:
    """The play's first text as Twilio took it (not the texts the test sent before)."""
    return [r for r in stack.creates(To=phone) if "Hi Ann" in (r.get("Body") or "")]


@dataclass(frozen=True)
class Held:
    """A deferral of the play's first text other than quiet hours, and how to bring it about
    (`arrange` returns the time the text will go)."""

    phone: str
    reason: str
    arrange: Callable[[Stack], Awaitable[datetime]]
    sweep_every: timedelta  # sweeps look at the waiting text again meanwhile


HELD = {
    "state_rule": Held(
        CONNECTICUT, "state_rule:CT", before_connecticuts_hours, timedelta(minutes=9)
    ),
    "frequency_cap": Held(FLORIDA, "frequency_cap", after_floridas_cap, timedelta(hours=7)),
}


@pytest.mark.parametrize("held", HELD.values(), ids=HELD.keys())
async def test_a_state_rule_or_cap_deferral_is_in_the_play_log_once(
    stack: Stack, held: Held
) -> None:
    await publish_mortgage(stack)
    until = await held.arrange(stack)
    play = await start(stack, held.phone)
    await stack.work()
    for _ in range(3):
        await stack.sandbox.advance(held.sweep_every.total_seconds())
        await stack.work()
    assert play_texts(stack, held.phone) == []
    [deferred] = [e for e in await stack.log(play["id"]) if e["kind"] == "deferred"]
    assert deferred["detail"]["reason"] == held.reason
    assert deferred["detail"]["channel"] == "sms"
    assert datetime.fromisoformat(deferred["detail"]["until"]) == until
    assert deferred["detail"]["message_id"]
    assert (await play_of(stack, play["id"]))["state"] == "running"
    await stack.sandbox.advance((until - now()).total_seconds() + 1)
    await stack.work()
    assert len(play_texts(stack, held.phone)) == 1
    entries = await stack.log(play["id"])
    assert len([e for e in entries if e["kind"] == "deferred"]) == 1


async def test_every_rep_declines_the_play_ends_rep_unsuccessful(
    stack: Stack, hooks: Hooks
) -> None:
    """The mortgage example: the lead asks for a call, both reps answer and don't press 1, the
    lead doesn't ask for a callback. The play ends with outcome `rep_unsuccessful` (not the
    `qualified` step after the call), and `interested` (said at two questions) is recorded once."""
    await publish_mortgage(stack)
    await add_reps(stack, 2, digits=[""])
    stack.sandbox.phones.script(LEAD2, digits=["", ""])  # no keypress at either prompt
    play = await start(stack, LEAD2)
    await stack.work()
    for reply in ("yes", "400k", "1", "call me now"):
        await stack.say(reply, LEAD2)
    await drive(stack)
    await stack.work()  # the last webhooks
    shown = await play_of(stack, play["id"])
    assert (shown["state"], shown["outcome"]) == ("has_outcome", "rep_unsuccessful")
    got = [a["label"] for a in shown["activities"]]
    assert got.count("interested") == 1
    assert got.count("party_line_rep_attempted") == 2
    assert got[-3:] == ["party_line_rep_unsuccessful", "rep_unsuccessful", "completed"]
    assert "qualified" not in got
    [line] = (await stack.api.get(f"/v1/plays/{play['id']}/party-lines")).json()["data"]
    assert line["end_reason"] == "rep_unsuccessful"
    assert [leg["result"] for leg in line["legs"] if leg["leg"].startswith("rep")] == [
        "declined",
        "declined",
    ]
    assert hooks.labels(play["id"]) == got
    repeated = [e for e in await stack.log(play["id"]) if e["kind"] == "activity_repeated"]
    assert [e["detail"]["label"] for e in repeated] == ["interested"]


async def test_an_api_started_party_line_gives_the_play_its_outcome(
    stack: Stack, hooks: Hooks
) -> None:
    await publish_mortgage(stack)
    await add_reps(stack, 1)
    play = await start(stack, LEAD2)
    await stack.work()  # the first question is out; the play waits for the answer
    started = await stack.api.post(f"/v1/plays/{play['id']}/party-line", json={})
    assert started.status_code == 201, started.text
    await drive(stack)
    await stack.work()
    shown = await play_of(stack, play["id"])
    assert (shown["state"], shown["outcome"]) == ("has_outcome", "party_line_completed")
    assert shown["waiting_reply"] is False
    got = [a["label"] for a in shown["activities"]]
    assert got[-2:] == ["party_line_completed", "completed"]
    assert got.count("party_line_completed") == 1
    assert hooks.labels(play["id"]) == got
    entries = await stack.log(play["id"])
    assert [e["detail"]["state"] for e in entries if e["kind"] == "state"] == [
        "running",
        "has_outcome",
    ]


RATES = """\
name: Rates
activities:
  events: [asked_about_rates]
  repeatable: [asked_about_rates]
  outcomes: [qualified]
steps:
  - id: q
    kind: ask
    text: "Hi {lead.first_name|there}! Ask us about rates, or reply DONE."
    choices:
      - keywords: [rates]
        event: asked_about_rates
        reply: "Rates start at 6%."
        goto: q
      - keywords: [done]
        outcome: qualified
"""


async def test_a_repeatable_event_is_recorded_at_every_match(stack: Stack) -> None:
    bad = await stack.api.put(
        "/v1/playbooks/rates",
        content=RATES.replace("repeatable: [asked", "repeatable: [askd"),
        headers=YAML,
    )
    assert bad.status_code == 422, bad.text
    assert "askd_about_rates" in bad.text
    published = await stack.api.put("/v1/playbooks/rates", content=RATES, headers=YAML)
    assert published.status_code == 201, published.text
    created = await stack.api.post(
        "/v1/plays", json={"playbook_id": "rates", "lead": {"phone": LEAD2, "first_name": "Ann"}}
    )
    assert created.status_code == 201, created.text
    await stack.work()
    for reply in ("rates?", "what are your rates", "done"):
        await stack.say(reply, LEAD2)
    shown = await play_of(stack, created.json()["id"])
    assert (shown["state"], shown["outcome"]) == ("has_outcome", "qualified")
    assert [a["label"] for a in shown["activities"]].count("asked_about_rates") == 2


async def test_a_batch_of_first_texts_starts_each_play_in_one_statement_a_kind(
    stack: Stack, hooks: Hooks
) -> None:
    """A drain sends three plays' first texts in one batch (the tests' web process sends
    nothing inline): one statement claims `started` for the three plays, one writes their
    activities, one reads the subscriptions with the leads, one writes the deliveries. Each
    webhook still carries its own lead; a play's second text finds it started, and no second
    `started` is recorded."""
    await publish_mortgage(stack)
    names = {"+14155550131": "Ann", "+14155550132": "Bo", "+14155550133": "Cy"}
    plays = {}
    for phone, name in names.items():
        created = await stack.api.post(
            "/v1/plays",
            json={
                "playbook_id": "mortgage-qualification",
                "lead": {"phone": phone, "first_name": name},
                "settings": {"partner_name": "Acme Lending"},
            },
        )
        assert created.status_code == 201, created.text
        plays[created.json()["id"]] = name
    with statements() as seen:
        await stack.work()  # the drain's batch, its status callbacks
    await stack.work()  # the webhooks

    def count(*parts: str) -> int:
        return sum(all(part in s for part in parts) for s in seen)

    assert count("UPDATE plays SET started") == 1
    assert count("INSERT INTO activities") == 1
    # The subscriptions an activity's account has, with the activities' leads (the
    # deliveries' job reads its own by id).
    assert count("JOIN webhook_subscriptions", "webhook_subscriptions.enabled =") == 1
    assert count("JOIN webhook_subscriptions", "JOIN leads", "JOIN lead_originators") == 1
    assert count("FROM leads LEFT OUTER JOIN lead_originators") == 0
    assert count("INSERT INTO webhook_deliveries") == 1
    for play_id, name in plays.items():
        [started] = hooks.of(play_id, "started")
        assert started["lead_first_name"] == name
    # The lead answers and the play texts again: that text finds the play started.
    phone = "+14155550131"
    [play_id] = [p for p, name in plays.items() if name == names[phone]]
    await stack.say("yes", phone)
    await stack.work()
    assert len(stack.creates(To=phone)) == 2
    assert hooks.labels(play_id).count("started") == 1
