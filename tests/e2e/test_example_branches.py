"""Every branch of the example playbooks is reachable: each accepted response (keyword or
example) of each choice, texted by a lead through the sandbox, goes through the real inbound
path (Twilio webhook, compliance classification, the play's reply job) and lands on its branch,
and no response opts the lead out."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import col, select

from gateway.db import transaction
from gateway.engine.starting import start_play
from gateway.ids import new_id
from gateway.models import Activity, Lead, OptOutEvent, Play
from gateway.playbooks import AskStep, parse_playbook
from tests.support.stack import OUR_NUMBER, Stack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
YAML = {"Content-Type": "application/yaml"}
# What a lead would have answered before reaching a later question (its templates use them).
ANSWERS = {"loan_amount": 350000, "credit": "2", "renewal_date": "March"}


async def test_every_accepted_response_lands_on_its_branch(stack: Stack) -> None:
    expected: dict[str, tuple[str, str, int, str | None, str | None]] = {}
    n = 0
    for name in ("insurance-xdate", "mortgage-qualification"):
        text = (EXAMPLES / f"{name}.yaml").read_text()
        published = await stack.api.put(f"/v1/playbooks/{name}", content=text, headers=YAML)
        assert published.status_code == 201, published.text
        # Nothing about the playbook itself (the account's own settings may have warnings).
        assert [w for w in published.json()["warnings"] if w["field"].startswith("steps")] == []
        playbook = parse_playbook(text)
        for step in playbook.steps:
            if not isinstance(step, AskStep):
                continue
            for j, choice in enumerate(step.choices):
                for reply in [*choice.keywords, *choice.examples]:
                    phone = f"+1415555{200 + n:04d}"
                    n += 1
                    action = playbook.choice_action(step.id, j)
                    play_id = await _waiting_at(stack, name, step.id, phone)
                    expected[play_id] = (reply, step.id, j, action.outcome, action.next_step)
                    stack.sandbox.send_sms(phone, OUR_NUMBER, reply)
    assert n > 80
    await stack.sandbox.settle()
    await stack.work()

    async with stack.sessions() as session:
        assert (await session.exec(select(OptOutEvent))).all() == []
        plays = {p.id: p for p in (await session.exec(select(Play))).all()}
        labels: dict[str, list[str]] = {}
        for activity in (await session.exec(select(Activity).order_by(col(Activity.id)))).all():
            if activity.play_id is not None:
                labels.setdefault(activity.play_id, []).append(activity.label)
    for play_id, (reply, ask_id, index, outcome, next_step) in expected.items():
        play = plays[play_id]
        where = f"{reply!r} at {ask_id!r} (choice {index + 1})"
        assert not any(label.startswith("catch_all") for label in labels.get(play_id, [])), where
        if outcome is not None:
            assert (play.state, play.outcome) == ("has_outcome", outcome), where
        else:
            assert play.outcome is None and play.step_id == next_step, where


async def _waiting_at(stack: Stack, playbook_id: str, step_id: str, phone: str) -> str:
    """A play of a new lead, waiting for the lead's answer to the ask `step_id`."""
    async with transaction(stack.sessions) as session:
        lead = Lead(id=new_id("lead"), account_id=stack.account_id, phone=phone, first_name="Ann")
        session.add(lead)
        await session.flush()
        play = await start_play(
            session, lead=lead, playbook_id=playbook_id, settings={"partner_name": "Acme"}
        )
        play.step_id, play.waiting_reply, play.due_at = step_id, True, None
        play.answers = dict(ANSWERS)
        session.add(play)
    return play.id
