"""Deliveries in batches (gateway/webhooks/delivery.py): one run per subscription claims what
can go in one statement, a claim holds a delivery until its lease ends (so a crashed run's
deliveries go again), and a subscription staged while its run is live gets a follow-up."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from arq import Retry, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix
from sqlalchemy import update
from sqlmodel import col
from starlette.testclient import TestClient

from gateway import webhook_policy as policy
from gateway.clock import now, set_clock
from gateway.db import SessionFactory, transaction
from gateway.engine.records import record_activity
from gateway.job_context import as_ctx
from gateway.models import ActivityType, DeliveryStatus, WebhookDelivery
from gateway.settings import Settings
from gateway.webhooks import concurrency, delivery
from gateway.work import WEBHOOK_DELIVER, bind, kinds
from gateway.work.staging import DRAIN_AGAIN_SECONDS
from gateway.worker import opened_job_context, redis_settings
from tests.conftest import RunWorker
from tests.support.sql import statements
from tests.support.tenants import Tenant
from tests.support.webhook_endpoint import WebhookEndpoint

from .conftest import deliveries, new_play, record, subscribe

# The claim, and the statement that gives back claims a run will not send.
NEXT_ATTEMPT = "UPDATE webhook_deliveries SET next_attempt_at"


def _claims(seen: list[str]) -> list[str]:
    return [s for s in seen if "IN (SELECT" in s]


def _given_back(seen: list[str]) -> list[str]:
    return [s for s in seen if "IN (SELECT" not in s]


async def _backlog(sessions: SessionFactory, tenant: Tenant, owed: int) -> None:
    for n in range(owed):
        play = await new_play(sessions, tenant.account_id, f"+1415557{n:04d}")
        await record(sessions, play, "started")


async def test_one_run_delivers_a_backlog_in_claims_ahead_of_its_slots_each_once(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    subscribe(client, tenant, receiver.url + "/hook")
    owed = 40
    await _backlog(sessions, tenant, owed)
    with statements(NEXT_ATTEMPT) as seen:
        await run_worker()
    rows = await deliveries(sessions)
    assert [d.status for d in rows] == [DeliveryStatus.DELIVERED] * owed
    assert sorted(b["id"] for b in receiver.bodies()) == sorted(d.event_id for d in rows)
    # The first claim takes CLAIM_AHEAD rounds of slots; the next ones, once fewer than a round
    # wait, at least CLAIM_AHEAD - 1 rounds; then at most two that find nothing left: one
    # while the last requests run, one once all have settled. (A claim per free half of the
    # slots would have been 11.)
    round_ = policy.MAX_IN_FLIGHT
    ahead = delivery.CLAIM_AHEAD * round_
    later = math.ceil((owed - ahead) / ((delivery.CLAIM_AHEAD - 1) * round_))
    assert len(_claims(seen)) <= 1 + later + 2
    assert _given_back(seen) == []  # the endpoint answered well: every claim was sent


async def test_a_failing_endpoint_has_the_claims_not_yet_sent_given_back(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claimed ahead and not sent when a request fails: due again at once, not held for the
    claim's lease. (How many go out before the breaker opens depends on how soon the failures
    are recorded, as it did before claims went ahead.)"""
    monkeypatch.setattr(kinds, "MAX_DEFER_SECONDS", 0.0)  # retries wait for the sweep
    receiver.answer = lambda _r: 500
    subscribe(client, tenant, receiver.url + "/hook")
    owed = 20  # one claim takes them all; a round of slots sends 8
    await _backlog(sessions, tenant, owed)
    with statements(NEXT_ATTEMPT) as seen:
        await run_worker()
    assert _given_back(seen)
    rows = await deliveries(sessions)
    assert len([d for d in rows if d.attempts]) == len(receiver.received) >= 1
    moment = now()
    for d in rows:
        assert d.status == DeliveryStatus.PENDING
        assert d.next_attempt_at is not None
        if not d.attempts:  # given back: due now, not at the end of a lease
            assert d.next_attempt_at <= moment
        else:  # failed: due at its retry, not before the first delay
            assert d.next_attempt_at >= d.updated_at + timedelta(
                seconds=policy.RETRY_SCHEDULE[0] * (1 - policy.JITTER)
            )


async def test_a_claim_that_waited_half_its_lease_for_a_slot_is_given_back_not_sent(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a slow endpoint a claimed delivery can wait long for a slot; sent after its lease
    ended, another run could have claimed it too. One slot, a lease of 1 s, answers after
    0.3 s: the third of a claim of four has waited past half the lease."""
    monkeypatch.setattr(concurrency, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(policy, "MAX_IN_FLIGHT", 1)
    receiver.delays["/hook"] = 0.3
    subscribe(client, tenant, receiver.url + "/hook")
    owed = 4
    await _backlog(sessions, tenant, owed)
    with statements(NEXT_ATTEMPT) as seen:
        await run_worker()
    rows = await deliveries(sessions)
    assert [d.status for d in rows] == [DeliveryStatus.DELIVERED] * owed
    assert [d.attempts for d in rows] == [1] * owed
    assert len(receiver.received) == owed
    assert _given_back(seen)
    assert len(_claims(seen)) >= 2  # the given back were claimed again, afresh


async def test_a_run_that_finds_every_slot_taken_gives_its_claims_back(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, settings: Settings
) -> None:
    hook = subscribe(client, tenant, "http://127.0.0.1:9/hook")
    await _backlog(sessions, tenant, 3)
    assert settings.redis_url is not None
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        taken = await concurrency.acquire(redis, hook["id"], policy.MAX_IN_FLIGHT)
        assert len(taken) == policy.MAX_IN_FLIGHT
        async with opened_job_context(settings, sessions, redis) as jc:
            ctx = {**as_ctx(jc), "job_id": WEBHOOK_DELIVER.job_id(hook["id"])}
            with pytest.raises(Retry):
                await delivery.deliver(ctx, hook["id"])
        await concurrency.release(redis, hook["id"], taken)
    finally:
        await redis.aclose()
    moment = now()
    rows = await deliveries(sessions)
    assert [d.attempts for d in rows] == [0, 0, 0]
    assert all(d.next_attempt_at is not None and d.next_attempt_at <= moment for d in rows)
    # Free again: a new claim takes them at once.
    batch = await delivery._claim(sessions, hook["id"], 8)
    assert batch is not None and len(batch.deliveries) == 3


async def test_a_claim_takes_a_plays_oldest_and_holds_it_until_its_lease_ends(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant
) -> None:
    hook = subscribe(client, tenant, "http://127.0.0.1:9/hook")
    first_play = await new_play(sessions, tenant.account_id)
    first, later = await record(sessions, first_play, "started", "qualified")
    other_play = await new_play(sessions, tenant.account_id, "+14155550999")
    [other] = await record(sessions, other_play, "started")
    batch = await delivery._claim(sessions, hook["id"], 8)
    assert batch is not None
    # In order: a play's later activity waits for its first to settle.
    by_activity = {d.activity_id: d.id for d in await deliveries(sessions)}
    claimed = {c.id for c in batch.deliveries}
    assert claimed == {by_activity[first.id], by_activity[other.id]}
    # Claimed: no other run takes them, however many slots it has.
    again = await delivery._claim(sessions, hook["id"], 8)
    assert again is not None and again.deliveries == []
    # The run that claimed them died: once the lease ends, they go again (at-least-once).
    after_lease = now() + delivery.claim_lease() + timedelta(seconds=1)
    set_clock(lambda: after_lease)
    try:
        recovered = await delivery._claim(sessions, hook["id"], 8)
    finally:
        set_clock(None)
    assert recovered is not None and {c.id for c in recovered.deliveries} == claimed
    # Once the play's first has settled, its later activity can go.
    async with transaction(sessions) as session:
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(claimed))
            .values(status=DeliveryStatus.DELIVERED)
        )
    following = await delivery._claim(sessions, hook["id"], 8)
    assert following is not None
    assert [c.id for c in following.deliveries] == [by_activity[later.id]]


async def test_staging_while_the_subscriptions_run_is_live_enqueues_a_follow_up(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, settings: Settings
) -> None:
    """A run past its last claim still holds its job id: what is committed then must not wait
    for the sweep."""
    hook = subscribe(client, tenant, "http://127.0.0.1:9/hook")
    play = await new_play(sessions, tenant.account_id)
    assert settings.redis_url is not None
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        live = await redis.enqueue_job(
            WEBHOOK_DELIVER.name, hook["id"], _job_id=WEBHOOK_DELIVER.job_id(hook["id"])
        )
        assert live is not None
        before = now()
        await record(bind(sessions, redis), play, "started")
        follow_ups = [
            key
            async for key in redis.scan_iter(
                match=job_key_prefix + WEBHOOK_DELIVER.job_id(hook["id"]) + "@*"
            )
        ]
    finally:
        await redis.aclose()
    [key] = follow_ups
    at = int(key.decode().rsplit("@", 1)[1])
    assert int(before.timestamp()) <= at <= int(before.timestamp() + DRAIN_AGAIN_SECONDS) + 1


async def test_a_follow_up_waits_while_the_subscriptions_run_is_running(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, settings: Settings
) -> None:
    """Two runs of one subscription would split its slots and its batches: a follow-up that
    finds the run running comes back later instead, and runs once it has ended."""
    hook = subscribe(client, tenant, "http://127.0.0.1:9/hook")
    run_id = WEBHOOK_DELIVER.job_id(hook["id"])
    follow_up = WEBHOOK_DELIVER.job_id(hook["id"], at=now() + timedelta(seconds=1))
    assert settings.redis_url is not None
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        async with opened_job_context(settings, sessions, redis) as jc:
            ctx = {**as_ctx(jc), "job_id": follow_up}
            await redis.set(in_progress_key_prefix + run_id, b"1")
            with pytest.raises(Retry):
                await delivery.deliver(ctx, hook["id"])
            # The run itself is not held back by its own lock.
            assert await delivery.deliver({**ctx, "job_id": run_id}, hook["id"]) == "none owed"
            await redis.delete(in_progress_key_prefix + run_id)
            assert await delivery.deliver(ctx, hook["id"]) == "none owed"
    finally:
        await redis.aclose()


async def test_the_claim_reads_the_subscriptions_owed_deliveries_in_order_on_its_index(
    sessions: SessionFactory,
) -> None:
    """SQLite has no statistics to plan by: the claim must not walk every delivery the
    subscription ever had, nor sort every due delivery of every subscription."""
    async with sessions() as session:
        connection = await session.connection()
        if connection.dialect.name != "sqlite":
            pytest.skip("SQLite's planner")
        compiled = delivery._CLAIM.compile(dialect=connection.dialect)
        params = [
            compiled.params[name] if compiled.params[name] is not None else 1
            for name in compiled.positiontup or []
        ]
        plan = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(params))
        steps = [row[3] for row in plan]
    # The claimed rows by their keys; the owed ones of the subscription in order on its index.
    assert "INDEX sqlite_autoindex_webhook_deliveries_1 (id=?)" in steps[0], steps
    assert any("USING INDEX ix_webhook_deliveries_claim" in step for step in steps), steps
    assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in steps), steps


def _joins(node: dict[str, Any]) -> list[str]:
    """The join types in a PostgreSQL plan (EXPLAIN FORMAT JSON), depth first."""
    here = [node["Join Type"]] if "Join Type" in node else []
    return here + [kind for child in node.get("Plans", []) for kind in _joins(child)]


def _subplans(node: dict[str, Any]) -> list[str]:
    """The names of the correlated subplans in a PostgreSQL plan."""
    here = [node["Subplan Name"]] if "Subplan Name" in node else []
    return here + [name for child in node.get("Plans", []) for name in _subplans(child)]


async def test_the_claims_in_order_check_is_a_lookup_per_candidate_on_postgresql(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    """Each candidate's check for an earlier delivery of its play is a lookup of its own, never
    a join. As an anti-join, PostgreSQL's planner without fresh statistics (a burst before
    autovacuum has analyzed the table) read every owed delivery of the subscription once per
    candidate: 16 ms for a claim of 4 behind 10,000 owed (bench/RESULTS.md section 18). Which
    index the lookup takes depends on the statistics, so the rows it reads are not asserted."""
    async with sessions() as session:
        if (await session.connection()).dialect.name != "postgresql":
            pytest.skip("PostgreSQL's planner")
    subscription = subscribe(client, tenant, receiver.url + "/hook")
    owed = 20
    plays = [await new_play(sessions, tenant.account_id, f"+1415558{n:04d}") for n in range(owed)]
    async with transaction(sessions) as session:
        for play in plays:
            await record_activity(session, play, ActivityType.EVENT, "started", "note")
    async with sessions() as session:
        connection = await session.connection()
        moment = now()
        compiled = delivery._CLAIM.compile(dialect=connection.dialect)
        values = {
            "account": tenant.account_id,
            "subscription": subscription["id"],
            "moment": moment,
            "limit": 4,
            "lease_until": moment + timedelta(minutes=1),
        }
        params = [compiled.construct_params(values)[name] for name in compiled.positiontup or []]
        sql = str(compiled)
        for index in range(len(params), 0, -1):  # asyncpg numbers its parameters
            sql = sql.replace(f"%({compiled.positiontup[index - 1]})s", f"${index}")
        answer = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", tuple(params))
        [[plan]] = answer.all()
    root = plan[0]["Plan"]
    # The claimed rows are joined to their keys (an inner join); no anti-join, one lookup.
    assert "Anti" not in _joins(root), root
    assert _subplans(root) == ["SubPlan 1"], root


async def test_a_claim_takes_no_more_than_its_limit(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    """On PostgreSQL too, where `id IN (SELECT ... LIMIT n FOR UPDATE)` may be run again for
    each row the UPDATE changes, each run finding the next n (the inbox's claim once took a
    whole backlog that way)."""
    subscription = subscribe(client, tenant, receiver.url + "/hook")
    await _backlog(sessions, tenant, 12)
    batch = await delivery._claim(sessions, subscription["id"], 4)
    assert batch is not None
    assert len(batch.deliveries) == 4
