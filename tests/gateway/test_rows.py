"""`gateway.rows`: a new model object built without attribute events (`fresh`), and a new row
written at once by a Core INSERT, its object left in the session as a flush would have left it
(`insert_row`)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from gateway.clock import stamp
from gateway.db import SessionFactory, transaction
from gateway.ids import new_id
from gateway.models import (
    Activity,
    ActivityType,
    DeliveryStatus,
    Direction,
    Lead,
    Message,
    MessageStatus,
    Play,
    PlayState,
    Purpose,
    WebhookDelivery,
)
from gateway.rows import fresh, insert_row
from tests.support.sql import statements
from tests.support.tenants import new_tenant


def _play(account_id: str, lead_id: str) -> Play:
    return Play(
        id=new_id("play"),
        account_id=account_id,
        lead_id=lead_id,
        playbook_id="hello",
        playbook_version=1,
        state=PlayState.RUNNING,
        step_id="first",
    )


async def test_the_row_is_written_at_once_and_its_object_is_the_sessions(
    sessions: SessionFactory,
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead = Lead(id=new_id("lead"), account_id=tenant.account_id, phone="+14155550199")
    play = _play(tenant.account_id, lead.id)
    with statements() as sent:
        async with transaction(sessions) as session:
            # The lead is only pending: written first, since the play's row names it.
            session.add(lead)
            await insert_row(session, play)
            written = list(sent)
            # Found without a read; a change to it is an UPDATE of that column at commit.
            assert await session.get(Play, play.id) is play
            assert len(sent) == len(written)
            play.step_id = "second"
    inserts = [s for s in written if s.lstrip().startswith("INSERT")]
    assert [s.split("(")[0].split()[-1] for s in inserts] == ["leads", "plays"]
    updates = [s for s in sent if s.lstrip().startswith("UPDATE plays")]
    assert len(updates) == 1 and "step_id" in updates[0]
    async with sessions() as session:
        stored = await session.get(Play, play.id)
        assert stored is not None
        assert (stored.lead_id, stored.step_id, stored.state) == (lead.id, "second", "running")


async def test_a_rollback_takes_the_row_with_it(sessions: SessionFactory) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead = Lead(id=new_id("lead"), account_id=tenant.account_id, phone="+14155550198")
    async with transaction(sessions) as session:
        session.add(lead)
    play = _play(tenant.account_id, lead.id)
    play_id = play.id
    async with sessions() as session:
        await insert_row(session, play)
        assert await session.get(Play, play_id) is play
        await session.rollback()
    async with sessions() as session:
        assert await session.get(Play, play_id) is None


# Each hot path's model with the values its caller gives (the rest are the model's defaults).
GIVEN: list[tuple[type[SQLModel], dict[str, Any]]] = [
    (
        Message,
        {
            "id": "msg_1",
            "account_id": "acc_1",
            "lead_id": "lead_1",
            "play_id": "play_1",
            "lead_phone": "+14155550100",
            "direction": Direction.OUTBOUND,
            "to_number": "+14155550100",
            "body": "Hi Kai",
            "purpose": Purpose.INITIATED,
            "reason": "play",
            "status": MessageStatus.QUEUED,
            "num_segments": 1,
            "created_at": stamp(),
        },
    ),
    (
        Play,
        {
            "id": "play_1",
            "account_id": "acc_1",
            "lead_id": "lead_1",
            "playbook_id": "hello",
            "playbook_version": 1,
            "state": PlayState.RUNNING,
            "settings": {"rate": 6},
            "step_id": "first",
        },
    ),
    (
        Activity,
        {
            "public_id": "evt_1",
            "account_id": "acc_1",
            "type": ActivityType.EVENT,
            "label": "started",
        },
    ),
    (
        WebhookDelivery,
        {
            "id": "dlv_1",
            "account_id": "acc_1",
            "subscription_id": "whs_1",
            "activity_id": 7,
            "event_id": "evt_1",
            "label": "started",
            "status": DeliveryStatus.PENDING,
            "payload": {"id": "evt_1"},
            "expires_at": stamp(),
        },
    ),
]


def _fields(row: SQLModel) -> dict[str, Any]:
    return {name: getattr(row, name) for name in type(row).model_fields}


@pytest.mark.parametrize(("model", "values"), GIVEN, ids=lambda v: getattr(v, "__name__", ""))
def test_fresh_holds_what_the_constructor_holds(
    model: type[SQLModel], values: dict[str, Any]
) -> None:
    built, made = model(**values), fresh(model, **values)
    assert inspect(made).transient
    assert made.__pydantic_fields_set__ == built.__pydantic_fields_set__
    expected, found = _fields(built), _fields(made)
    # A default made by a factory is made anew (a time a few microseconds later, a new dict).
    made_anew = {n for n, f in model.model_fields.items() if f.default_factory and n not in values}
    for name in made_anew:
        assert type(found.pop(name)) is type(expected.pop(name)), name
    assert found == expected


def test_fresh_makes_each_mutable_default_anew() -> None:
    first, second = (fresh(Play, **dict(GIVEN[1][1], settings={})) for _ in range(2))
    assert first.answers == {} and first.answers is not second.answers
    first.answers["q"] = "yes"
    assert second.answers == {}


def test_fresh_refuses_an_unknown_field_and_a_missing_required_one() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        fresh(Activity, **GIVEN[2][1], colour="red")
    with pytest.raises(TypeError, match=r"Activity\.label is required"):
        fresh(Activity, **{k: v for k, v in GIVEN[2][1].items() if k != "label"})


async def test_a_fresh_object_is_written_by_a_flush_and_by_insert_row(
    sessions: SessionFactory,
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead = fresh(Lead, id=new_id("lead"), account_id=tenant.account_id, phone="+14155550197")
    play = fresh(Play, **dict(GIVEN[1][1], id=new_id("play"), account_id=tenant.account_id))
    play.lead_id = lead.id
    with statements() as sent:
        async with transaction(sessions) as session:
            session.add(lead)  # written by the unit of work, before the play that names it
            await insert_row(session, play)
            play.step_id = "second"  # an UPDATE at commit, as for a constructed object
    updates = [s for s in sent if s.lstrip().startswith("UPDATE plays")]
    assert len(updates) == 1 and "step_id" in updates[0]
    async with sessions() as session:
        stored_lead = await session.get(Lead, lead.id)
        stored = await session.get(Play, play.id)
    assert stored_lead is not None and stored_lead.phone == "+14155550197"
    assert stored is not None
    assert (stored.lead_id, stored.step_id, stored.settings) == (lead.id, "second", {"rate": 6})


@pytest.mark.parametrize("keep", [True, False])
async def test_an_id_the_database_makes_comes_back_from_the_insert(
    sessions: SessionFactory, keep: bool
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    made = []
    with statements("INSERT INTO activities") as sent:
        async with transaction(sessions) as session:
            for label in ("started", "qualified"):
                activity = fresh(Activity, **dict(GIVEN[2][1], account_id=tenant.account_id))
                activity.public_id, activity.label = new_id("evt"), label
                await insert_row(session, activity, keep=keep)
                made.append(activity)
                assert (activity in session) is keep
    assert len(sent) == 2
    first, second = made
    assert first.id is not None and second.id is not None and second.id > first.id
    async with sessions() as session:
        stored = await session.get(Activity, second.id)
    assert stored is not None and stored.label == "qualified"
