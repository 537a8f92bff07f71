"""Inline jobs (`gateway.work.inline`): the work a lead waits on runs in the process whose commit
made it due, with no worker and no trip through Redis; past the limit, and when a job asks to
run later, it goes through Redis; either way each text is sent once.

The whole stack on 127.0.0.1 (`tests.support.stack`), with `INLINE_JOBS` on as by default."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from arq.worker import func
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import transaction
from gateway.job_context import JobContext, as_ctx
from gateway.jobs import sms_send
from gateway.models import Account, Message, MessageEvent, MessageStatus
from gateway.settings import Settings
from gateway.sms import outbox, sender
from gateway.work import SMS_SEND, SMS_SENDS, Kind, kinds, registry
from gateway.work import inline as inline_jobs
from gateway.work.inline import Inline
from gateway.work.staging import Staged, planned, staged_now
from gateway.worker import (
    INLINE_BACKLOG,
    JOB_TIMEOUT,
    build_job_context,
    close_job_context,
    inline_runner,
)
from tests.e2e.test_plays_api import play_body, publish
from tests.gateway.test_work import queued_jobs, text
from tests.support.ports import free_port
from tests.support.sql import statements
from tests.support.stack import LEAD, OUR_NUMBER, Stack

WAIT_SECONDS = 20.0
PHONES = ["+14155550131", "+14155550132", "+14155550133"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.inline_jobs = 4  # the app's own runner (the tests' default is 0: burst workers)
    return settings


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) for something the app does on its own, by looking at what it wrote."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while not await condition():  # noqa: ASYNC110 (the app signals nothing to wait on)
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not within {WAIT_SECONDS:.0f} s: {what}")


async def statuses(stack: Stack) -> dict[str, str]:
    async with stack.sessions() as session:
        rows = await session.exec(select(Message.lead_phone, Message.status))
        return {phone: str(status) for phone, status in rows.all()}


async def test_a_posted_lead_is_texted_by_the_web_process_with_no_worker(stack: Stack) -> None:
    await publish(stack)
    created = await stack.api.post("/v1/plays", json=play_body())
    assert created.status_code == 201, created.text

    # No worker runs: the web process ran the play's first step and sent its text itself.
    async def sent() -> bool:
        return len(stack.creates(To=LEAD)) == 1

    async def accepted() -> bool:
        return (await statuses(stack)).get(LEAD) == MessageStatus.ACCEPTED

    await until(sent, "the first text is sent")
    jobs = await queued_jobs(stack.api_redis)
    assert not [j for j in jobs if j.startswith(("play:", "sms:"))], jobs
    await until(accepted, "the text is recorded as accepted")
    # What follows (status callbacks, webhook deliveries) goes on as before, and a worker that
    # runs now finds nothing to send again.
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1
    assert (await statuses(stack))[LEAD] == MessageStatus.DELIVERED


async def sms_jobs(stack: Stack) -> list[str]:
    """The jobs in Redis that send texts, one's own (`sms.send`) or an account's
    (`sms.sends`); the API's requests queue others, e.g. keys.mark_used."""
    jobs = await queued_jobs(stack.api_redis)
    return sorted(j for j in jobs if j.startswith(("sms:", "sends:")))


async def queue_texts(inline: Inline, stack: Stack, sessions_settings: Settings) -> list[str]:
    jc = build_job_context(sessions_settings, stack.sessions, stack.api_redis, inline=inline)
    try:
        async with transaction(jc.sessions) as session:
            ids = [(await text(session, stack.account_id, phone=p)).id for p in PHONES]
        await inline.aclose(WAIT_SECONDS)
    finally:
        await close_job_context(jc)
    return ids


async def test_texts_one_commit_queued_for_an_account_are_sent_together(stack: Stack) -> None:
    """Three texts of one commit (as a batch of replies queues them): one job here reads them
    in one statement, gates and claims them in one transaction, sends them at once and records
    what Twilio answered in one statement, where a job each took two transactions apiece."""
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    with statements() as seen:
        ids = await queue_texts(inline, stack, stack.settings)
    assert sorted(r.get("To") for r in stack.creates()) == PHONES  # each once
    assert await sms_jobs(stack) == []  # sent here: no job through Redis

    def count(*parts: str) -> int:
        return sum(all(part in s for part in parts) for s in seen)

    assert count("FROM messages JOIN accounts", "messages.id IN") == 1  # the three, read once
    assert count("twilio_sid=coalesce(messages.twilio_sid, CASE") == 1  # one record
    for message_id in ids:
        assert await history(stack, message_id) == ["queued", "sending", "accepted"]
    await stack.work()  # a worker finds nothing to send again
    assert len(stack.creates()) == len(PHONES)


async def held_runner(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    *,
    backlog: int,
    release: asyncio.Event | None = None,
) -> tuple[Inline, JobContext]:
    """A runner with one slot, which a stand-in job holds until `release` (or the runner's
    close), and its job context (close it afterwards)."""
    release = release or asyncio.Event()

    async def hold(argument: str) -> None:
        await release.wait()

    kind = stand_in(monkeypatch, "test.holds", hold)
    inline = Inline(stack.api_redis, 1, timeout=JOB_TIMEOUT, backlog=backlog)
    jc = build_job_context(stack.settings, stack.sessions, stack.api_redis, inline=inline)
    await inline(staged(kind, "slot"))
    return inline, jc


@pytest.mark.parametrize(
    "backlog",
    [
        0,  # `gateway web`: past the limit, straight to Redis
        4,  # `gateway run`: waiting their turn in the runner when it shuts down
    ],
)
async def test_past_its_limit_a_process_hands_texts_to_their_accounts_drain(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, backlog: int
) -> None:
    inline, jc = await held_runner(stack, monkeypatch, backlog=backlog)
    try:
        async with transaction(jc.sessions) as session:
            for phone in PHONES:
                await text(session, stack.account_id, phone=phone)
        await inline.aclose(0.05)
    finally:
        await close_job_context(jc)
    # Not sent here: they wait in Redis for a worker, as their account's drain.
    assert stack.creates() == []
    assert await sms_jobs(stack) == [SMS_SENDS.job_id(stack.account_id)]
    await stack.work()
    assert sorted(r.get("To") for r in stack.creates()) == PHONES


async def test_a_job_that_asks_to_run_later_goes_to_redis_for_then(stack: Stack) -> None:
    # Twilio unreachable: did it get the text? Unknown, so the job asks to run again once the
    # in-flight grace has passed (arq Retry), when it asks Twilio before sending again.
    unreachable = stack.settings.model_copy(
        update={"twilio_api_url": f"http://127.0.0.1:{free_port()}"}
    )
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    before = now()
    ids = await queue_texts(inline, stack, unreachable)
    jobs = await queued_jobs(stack.api_redis)
    texts = await sms_jobs(stack)
    assert sorted(j.split("@")[0] for j in texts) == sorted(SMS_SEND.job_id(i) for i in ids)
    # Under each job's own id, as arq retries it, however far out (past MAX_DEFER_SECONDS): so a
    # sweep in the meantime finds the job live and does not send the text sooner.
    assert texts == sorted(SMS_SEND.job_id(i) for i in ids)
    assert max(jobs[j] for j in texts) / 1000 > now().timestamp() + kinds.MAX_DEFER_SECONDS
    for due_ms in (jobs[j] for j in texts):
        assert due_ms / 1000 >= (before + timedelta(seconds=30)).timestamp()
    async with stack.sessions() as session:
        rows = (await session.exec(select(Message).where(col(Message.id).in_(ids)))).all()
    assert {r.status for r in rows} == {MessageStatus.SENDING}
    assert stack.sandbox.record.requests("messages.create") == []


def stand_in(
    monkeypatch: pytest.MonkeyPatch, name: str, body: Callable[[str], Awaitable[None]]
) -> Kind:
    """A kind of work registered inline for one test, whose job runs `body(argument)`: what the
    runner does with a job that fails, outlives the shutdown or waits its turn, whatever the
    job."""
    kind = Kind(name, name)

    async def run(ctx: dict[str, Any], argument: str) -> None:
        await body(argument)

    entry = registry.Registered(kind, func(run, name=name), due=None, tidy=None, inline=True)
    monkeypatch.setitem(registry._REGISTRY, name, entry)
    return kind


async def test_a_failing_inline_job_is_logged_and_left_to_the_sweep(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail(argument: str) -> None:
        raise RuntimeError("the database went away")

    kind = stand_in(monkeypatch, "test.fails", fail)
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    inline.start({})
    item = planned(kind, "row-1")
    assert item is not None
    with caplog.at_level(logging.ERROR, logger="gateway.work.inline"):
        await inline([item])
        await inline.aclose(WAIT_SECONDS)
    [record] = [r for r in caplog.records if r.name == "gateway.work.inline"]
    assert "test.fails:row-1 failed; the sweep will retry it" in record.getMessage()
    assert record.exc_info is not None and "went away" in str(record.exc_info[1])
    # Not re-enqueued: like a failed arq job, the row that owes the work is the sweep's.
    assert not [j for j in await queued_jobs(stack.api_redis) if j.startswith("test.")]


async def test_on_shutdown_running_jobs_get_their_grace_then_are_cancelled(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = asyncio.Event()

    async def hang(argument: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    kind = stand_in(monkeypatch, "test.hangs", hang)
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    inline.start({})
    item = planned(kind, "row-1")
    assert item is not None
    await inline([item])
    await inline.aclose(0.05)
    assert cancelled.is_set()
    # Closed: what is staged now goes to Redis, not into this process.
    await inline([item])
    assert "test.hangs:row-1" in await queued_jobs(stack.api_redis)


def staged(kind: Kind, *arguments: str) -> list[Staged]:
    items = [planned(kind, argument) for argument in arguments]
    assert all(item is not None for item in items)
    return [item for item in items if item is not None]


async def test_past_its_limit_a_runner_with_a_backlog_runs_work_in_turn(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gateway run`: past the limit, work waits in the runner, in order, rather than go round
    through Redis to the same process; past the backlog too, it goes to Redis."""
    started: list[str] = []
    release = asyncio.Event()

    async def wait_for_release(argument: str) -> None:
        started.append(argument)
        await release.wait()

    kind = stand_in(monkeypatch, "test.turns", wait_for_release)
    inline = Inline(stack.api_redis, 1, timeout=JOB_TIMEOUT, backlog=2)
    inline.start({})
    await inline(staged(kind, "a", "b", "c"))
    await asyncio.sleep(0.05)
    assert started == ["a"]  # one at a time; b and c wait their turn here
    assert inline.room_for_one() is None  # the limit and the backlog are full
    await inline(staged(kind, "d"))
    assert [j for j in await queued_jobs(stack.api_redis) if j.startswith("test.")] == [
        "test.turns:d"
    ]
    release.set()

    async def all_ran() -> bool:
        return len(started) == 3

    await until(all_ran, "the waiting jobs run once the first ends")
    await inline.aclose(WAIT_SECONDS)
    assert started == ["a", "b", "c"]  # in the order taken


async def test_only_a_process_with_its_own_worker_keeps_a_backlog(stack: Stack) -> None:
    # `gateway run` and `gateway worker`: what would go through Redis comes back to them.
    here = inline_runner(stack.settings, stack.api_redis, worker_here=True)
    # `gateway web`: its overflow is the workers'.
    elsewhere = inline_runner(stack.settings, stack.api_redis, worker_here=False)
    assert here is not None and elsewhere is not None
    assert (here.backlog, elsewhere.backlog) == (INLINE_BACKLOG, 0)


async def test_on_shutdown_waiting_work_goes_to_redis(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hang(argument: str) -> None:
        await asyncio.sleep(3600)

    kind = stand_in(monkeypatch, "test.waits", hang)
    inline = Inline(stack.api_redis, 1, timeout=JOB_TIMEOUT, backlog=4)
    inline.start({})
    await inline(staged(kind, "a", "b", "c"))
    await inline.aclose(0.05)
    # The running one is cancelled (its row is the sweep's); the two waiting are in Redis.
    assert sorted(j for j in await queued_jobs(stack.api_redis) if j.startswith("test.")) == [
        "test.waits:b",
        "test.waits:c",
    ]


# A text claimed in the transaction that queued it (`sms_send.claim_staged`): the process sends
# it after the commit, with no transaction of its own before the request to Twilio.


async def history(stack: Stack, message_id: str) -> list[str]:
    async with stack.sessions() as session:
        rows = await session.exec(
            select(MessageEvent.status)
            .where(MessageEvent.message_id == message_id)
            .order_by(col(MessageEvent.id))
        )
        return [str(status) for status in rows.all()]


async def claimed_in_transaction(
    stack: Stack, inline: Inline, *, phone: str = LEAD, close_first: bool = False
) -> Message:
    """A text queued and claimed in one transaction, as `POST /v1/plays` does for a lead's
    first text; `close_first`: the runner shuts down before the commit hands it over."""
    [message], _, _ = await queued_and_claimed(stack, inline, phone=phone, close_first=close_first)
    return message


async def queued_and_claimed(
    stack: Stack,
    inline: Inline,
    *,
    phone: str = LEAD,
    close_first: bool = False,
    held: bool = False,
    count: int = 1,
    before_claim: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> tuple[list[Message], set[str], list[str]]:
    """`count` texts to `phone` queued and claimed in one transaction: the texts, the ids the
    claim decided, and the statements the transaction ran. `held`: held unwritten for their
    claim (`outbox.hold_for_claim`), as `POST /v1/plays` holds a lead's first text;
    `before_claim`: what else the transaction does before the claim."""
    jc = build_job_context(stack.settings, stack.sessions, stack.api_redis, inline=inline)
    try:
        async with transaction(jc.sessions) as session:
            # Read first, as the request's account is: a read between the texts and their
            # claim would have the session write held texts first.
            account = await session.get(Account, stack.account_id)
            assert account is not None
            with statements() as seen:
                if held:
                    outbox.hold_for_claim(session)
                messages = [
                    await text(session, stack.account_id, phone=phone) for _ in range(count)
                ]
                if before_claim is not None:
                    await before_claim(session)
                decided = await sms_send.claim_staged(session, account)
                if close_first:
                    await inline.aclose(0)
                # Nothing leaves before the commit.
                assert stack.creates(To=phone) == []
            written = list(seen)
        await inline.aclose(WAIT_SECONDS)
    finally:
        await close_job_context(jc)
    return messages, decided, written


def writes_of_messages(seen: list[str]) -> list[str]:
    """The INSERTs and UPDATEs of `messages` among `seen`, by their first words."""
    words = [" ".join(s.split()[:3]) for s in seen]
    return [w for w in words if w in ("INSERT INTO messages", "UPDATE messages SET")]


async def test_a_text_claimed_in_its_transaction_is_sent_once_after_the_commit(
    stack: Stack,
) -> None:
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    message = await claimed_in_transaction(stack, inline)
    assert message.status == MessageStatus.SENDING  # claimed by the transaction that queued it
    assert len(stack.creates(To=LEAD)) == 1
    assert await sms_jobs(stack) == []  # sent here: no job through Redis
    assert await history(stack, message.id) == ["queued", "sending", "accepted"]
    await stack.work()  # a worker finds nothing to send again
    assert len(stack.creates(To=LEAD)) == 1


async def test_a_claimed_text_whose_runner_shut_down_is_reconciled_not_sent_twice(
    stack: Stack,
) -> None:
    """The process stops between the commit and the request: the row is `sending`, its plain
    job goes to Redis, and the worker asks Twilio before it sends (once)."""
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    message = await claimed_in_transaction(stack, inline, close_first=True)
    assert stack.creates(To=LEAD) == []
    assert await sms_jobs(stack) == [SMS_SEND.job_id(message.id)]
    await stack.sandbox.advance(sender.IN_FLIGHT_GRACE.total_seconds() + 150)
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1
    assert (await statuses(stack))[LEAD] == MessageStatus.DELIVERED


async def test_a_claim_in_a_transaction_that_rolls_back_leaves_nothing(stack: Stack) -> None:
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    jc = build_job_context(stack.settings, stack.sessions, stack.api_redis, inline=inline)
    try:
        with pytest.raises(RuntimeError, match="refused later"):
            async with transaction(jc.sessions) as session:
                await text(session, stack.account_id, phone=LEAD)
                account = await session.get(Account, stack.account_id)
                assert account is not None
                await sms_send.claim_staged(session, account)
                raise RuntimeError("refused later in the request")
        await inline.aclose(WAIT_SECONDS)
    finally:
        await close_job_context(jc)
    assert await statuses(stack) == {}
    assert stack.creates(To=LEAD) == []
    assert await sms_jobs(stack) == []


async def test_a_text_the_gate_blocks_in_its_transaction_is_done_with_no_job(
    stack: Stack,
) -> None:
    # The lead texted STOP: the gate blocks the text where it was queued, and nothing runs.
    await stack.say("STOP")
    before = len(stack.sandbox.record.requests("messages.create"))  # the STOP's confirmation
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    message = await claimed_in_transaction(stack, inline)
    assert message.status == MessageStatus.BLOCKED
    assert len(stack.sandbox.record.requests("messages.create")) == before
    assert await sms_jobs(stack) == []


async def test_a_held_text_is_written_once_already_claimed_and_sent_once(
    stack: Stack,
) -> None:
    """`POST /v1/plays` holds its lead's first text unwritten for its claim: one INSERT of the
    row as claimed, where a text written `queued` is then claimed by an UPDATE."""
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    _, _, plain = await queued_and_claimed(stack, inline, phone=PHONES[0])
    assert writes_of_messages(plain) == ["INSERT INTO messages", "UPDATE messages SET"]
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    [message], decided, seen = await queued_and_claimed(stack, inline, held=True)
    assert decided == {message.id}
    assert writes_of_messages(seen) == ["INSERT INTO messages"]
    assert message.status == MessageStatus.SENDING
    assert len(stack.creates(To=LEAD)) == 1
    assert await sms_jobs(stack) == []
    assert await history(stack, message.id) == ["queued", "sending", "accepted"]
    async with stack.sessions() as session:
        row = await session.get(Message, message.id)
        assert row is not None
        assert (row.attempts, row.from_number) == (1, OUR_NUMBER)
    await stack.work()  # a worker finds nothing to send again
    assert len(stack.creates(To=LEAD)) == 1


async def test_a_held_text_the_gate_blocks_is_written_blocked(stack: Stack) -> None:
    await stack.say("STOP")
    before = len(stack.sandbox.record.requests("messages.create"))  # the STOP's confirmation
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    [message], decided, seen = await queued_and_claimed(stack, inline, held=True)
    assert decided == {message.id}
    assert writes_of_messages(seen) == ["INSERT INTO messages"]
    assert (await statuses(stack))[LEAD] == MessageStatus.BLOCKED
    assert await history(stack, message.id) == ["queued", "blocked"]
    assert len(stack.sandbox.record.requests("messages.create")) == before
    assert await sms_jobs(stack) == []


async def test_a_held_text_behind_the_leads_earlier_one_waits_for_it(stack: Stack) -> None:
    """Two texts to one lead held in one transaction: the first is written, claimed, before
    the second's gate, which finds it ahead and leaves the second to its job."""
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    [first, second], decided, _ = await queued_and_claimed(stack, inline, held=True, count=2)
    assert decided == {first.id}
    async with stack.sessions() as session:
        rows = await session.exec(select(Message.id, Message.status))
        assert dict(rows.all()) == {first.id: MessageStatus.ACCEPTED, second.id: "queued"}
    assert await sms_jobs(stack) == [SMS_SEND.job_id(second.id)]
    await stack.work()
    bodies = [r.get("Body") for r in stack.creates(To=LEAD)]
    assert [b.startswith("hello") for b in bodies] == [True, True]


async def test_a_statement_before_the_claim_finds_a_held_text_written(stack: Stack) -> None:
    """Whatever the transaction asks before the claim sees the held text: the session writes
    it first (then the claim is an UPDATE, as for any text already written)."""
    found: list[str] = []

    async def ask(session: AsyncSession) -> None:
        found.extend((await session.exec(select(Message.id))).all())

    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    [message], decided, seen = await queued_and_claimed(stack, inline, held=True, before_claim=ask)
    assert found == [message.id]
    assert decided == {message.id}
    assert writes_of_messages(seen) == ["INSERT INTO messages", "UPDATE messages SET"]
    assert len(stack.creates(To=LEAD)) == 1
    assert await history(stack, message.id) == ["queued", "sending", "accepted"]


async def test_a_held_text_the_runner_has_no_room_for_is_written_queued_for_its_drain(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner had room when the text was held, and none by its claim (others took it
    meanwhile): nothing is claimed in the transaction, the session writes the text `queued`
    at its commit, and it is sent once, as any text staged to send now."""
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)

    async def fill(session: AsyncSession) -> None:
        monkeypatch.setattr(inline, "room_for_one", lambda: None)

    [message], decided, seen = await queued_and_claimed(stack, inline, held=True, before_claim=fill)
    assert decided == set()
    assert writes_of_messages(seen) == []  # held until the commit wrote it
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1
    assert (await history(stack, message.id))[:3] == ["queued", "sending", "accepted"]


async def test_a_held_text_whose_claim_rolls_back_leaves_nothing(stack: Stack) -> None:
    async def refuse(session: AsyncSession) -> None:
        raise RuntimeError("refused later in the request")

    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    with pytest.raises(RuntimeError, match="refused later"):
        await queued_and_claimed(stack, inline, held=True, before_claim=refuse)
    assert await statuses(stack) == {}
    assert stack.creates(To=LEAD) == []
    assert await sms_jobs(stack) == []


async def test_with_no_inline_runner_a_text_is_left_to_its_accounts_drain(stack: Stack) -> None:
    # A process that sends nothing itself (INLINE_JOBS=0) claims nothing: a worker does.
    async with transaction(stack.sessions) as session:
        message = await text(session, stack.account_id, phone=LEAD)
        account = await session.get(Account, stack.account_id)
        assert account is not None
        await sms_send.claim_staged(session, account)
        assert message.status == MessageStatus.QUEUED
    assert await sms_jobs(stack) == [SMS_SENDS.job_id(stack.account_id)]
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1


async def test_a_one_off_text_is_claimed_by_its_request_and_sent_once(stack: Stack) -> None:
    created = await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "Hi"})
    assert created.status_code == 201, created.text
    shown = created.json()
    # The request gated and claimed it (the answer says so); this process sends it.
    assert shown["status"] == MessageStatus.SENDING
    assert [h["status"] for h in shown["history"]] == ["queued", "sending"]

    async def accepted() -> bool:
        return (await statuses(stack)).get(LEAD) == MessageStatus.ACCEPTED

    await until(accepted, "the text is recorded as accepted")
    assert await sms_jobs(stack) == []
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1


async def test_a_posted_leads_first_text_is_claimed_by_the_post(stack: Stack) -> None:
    await publish(stack)
    with statements() as seen:
        created = await stack.api.post("/v1/plays", json=play_body())
    assert created.status_code == 201, created.text
    # Claimed when the POST committed: never `queued` once the answer is out.
    async with stack.sessions() as session:
        [status] = (await session.exec(select(Message.status))).all()
    assert status != MessageStatus.QUEUED
    # Written once, already claimed (`outbox.hold_for_claim`): no claim's UPDATE.
    assert writes_of_messages(seen)[0] == "INSERT INTO messages"
    assert not any("attempt_started_at=" in s for s in seen if "UPDATE messages" in s)


class _RedisAway:
    """A rate limiter whose Redis is unreachable (`JobContext.rate_limiter`)."""

    async def reserve(self, sender: str, per_second: float) -> float:
        raise RedisConnectionError("Redis is away")


async def test_with_redis_away_a_request_leaves_its_text_to_the_job(stack: Stack) -> None:
    """The sender's rate slot cannot be asked: the request neither fails nor claims; the text
    stays queued, staged for its job, and nothing was written of it."""
    stack.settings.sms_rate_limits = True
    inline = Inline(stack.api_redis, 4, timeout=JOB_TIMEOUT)
    jc = build_job_context(stack.settings, stack.sessions, stack.api_redis, inline=inline)
    inline.start(as_ctx(dataclasses.replace(jc, rate_limiter=_RedisAway())))
    try:
        async with transaction(jc.sessions) as session:
            outbox.hold_for_claim(session)  # held, and written as it stands, still queued
            message = await text(session, stack.account_id, phone=LEAD)
            account = await session.get(Account, stack.account_id)
            assert account is not None
            assert await sms_send.claim_staged(session, account) == set()
            assert message.status == MessageStatus.QUEUED
            assert staged_now(session, SMS_SEND) == [message.id]
        await inline.aclose(WAIT_SECONDS)
    finally:
        await close_job_context(jc)
    assert await history(stack, message.id) == ["queued"]
    assert (await statuses(stack))[LEAD] == MessageStatus.QUEUED


async def claimed_behind(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, release: asyncio.Event
) -> tuple[Inline, JobContext, Message]:
    """A runner with one slot, held by a stand-in job until `release`, and a text claimed in its
    transaction that waits in the backlog behind it (close the job context afterwards)."""
    inline, jc = await held_runner(stack, monkeypatch, backlog=4, release=release)
    async with transaction(jc.sessions) as session:
        message = await text(session, stack.account_id, phone=LEAD)
        account = await session.get(Account, stack.account_id)
        assert account is not None
        # The runner is full, and its backlog has room: the text is claimed here all the same.
        assert await sms_send.claim_staged(session, account) == {message.id}
    return inline, jc, message


async def test_a_claimed_text_waits_its_turn_in_the_backlog_then_is_sent_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    inline, jc, message = await claimed_behind(stack, monkeypatch, release)
    await asyncio.sleep(0.05)
    assert stack.creates(To=LEAD) == []  # behind the job in the one slot
    release.set()

    async def accepted() -> bool:
        return (await statuses(stack)).get(LEAD) == MessageStatus.ACCEPTED

    await until(accepted, "the waiting text is sent")
    await inline.aclose(WAIT_SECONDS)
    await close_job_context(jc)
    assert len(stack.creates(To=LEAD)) == 1
    assert await sms_jobs(stack) == []
    assert await history(stack, message.id) == ["queued", "sending", "accepted"]


async def test_a_claimed_text_that_waited_too_long_is_reconciled_not_sent_from_here(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its request could start so late that the sweep's job for a stuck `sending` row crossed
    it: past `BACKLOG_WAIT_LIMIT` its plain job goes to Redis, which asks Twilio first."""
    monkeypatch.setattr(inline_jobs, "BACKLOG_WAIT_LIMIT", 0.0)
    release = asyncio.Event()
    inline, jc, message = await claimed_behind(stack, monkeypatch, release)
    await asyncio.sleep(0.01)
    release.set()

    async def in_redis() -> bool:
        return await sms_jobs(stack) == [SMS_SEND.job_id(message.id)]

    await until(in_redis, "the waiting text's job is in Redis")
    await inline.aclose(WAIT_SECONDS)
    await close_job_context(jc)
    assert stack.creates(To=LEAD) == []
    await stack.sandbox.advance(sender.IN_FLIGHT_GRACE.total_seconds() + 150)
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1
    assert (await statuses(stack))[LEAD] == MessageStatus.DELIVERED


async def test_a_batch_of_replies_sends_the_plays_next_texts_together(stack: Stack) -> None:
    """Three leads answer at once: the worker's `sms.inbox` takes their replies in one batch,
    reading their leads in one statement and the account's webhook subscriptions once for the
    replies' activities, and its inline runner sends the three plays' next texts as one job,
    recorded in one statement."""
    await publish(stack)
    for phone in PHONES:
        created = await stack.api.post("/v1/plays", json=play_body(phone))
        assert created.status_code == 201, created.text
    await stack.work()
    assert sorted(r.get("To") for r in stack.creates()) == PHONES  # the first texts
    for phone in PHONES:
        stack.sandbox.send_sms(phone, OUR_NUMBER, "yes")
    await stack.sandbox.settle()
    with statements() as seen:
        await stack.work()
    # `advance_accepted`'s UPDATE, one per transaction that records texts Twilio took.
    assert sum("twilio_sid=coalesce(messages.twilio_sid, CASE" in s for s in seen) == 1
    # `activity_webhooks`' read of the account's subscriptions, once for the batch.
    assert sum("webhook_subscriptions.enabled =" in s for s in seen) == 1
    # The inbox's read of the texts' leads, once for the batch: the three in one statement.
    flat = [" ".join(s.split()) for s in seen]
    [leads_read] = [s for s in flat if "FROM leads WHERE leads.account_id =" in s]
    assert leads_read.count("leads.phone =") == len(PHONES)
    for phone in PHONES:
        assert len(stack.creates(To=phone)) == 2  # each lead's next question, once


async def test_a_timed_steps_text_is_claimed_by_its_step_and_sent_once(stack: Stack) -> None:
    """A day of silence: the play's re-engagement comes due. The `plays.advance` job gates and
    claims its text in the step's own transaction, and its process sends it: the text is not
    read again by a job of its own, and nothing goes through Redis to send it."""
    await publish(stack)
    created = await stack.api.post("/v1/plays", json=play_body())
    assert created.status_code == 201, created.text
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1  # the first question
    await stack.sandbox.advance(24 * 3600 + 60)  # the example's `reengagement.after`, passed
    with statements() as seen:
        await stack.work()
    [_question, nudge] = [r.get("Body") for r in stack.creates(To=LEAD)]
    assert "Still happy to help" in nudge
    # `sender.prepare`'s read of a text by id, which a text's own job makes: none.
    assert not any("FROM messages JOIN accounts" in s for s in seen)
    # The play, moved on by the step, written in one UPDATE (its count and its next time).
    [written] = [s for s in seen if s.lstrip().startswith("UPDATE plays SET") and "sent=" in s]
    assert "due_at=" in written
    async with stack.sessions() as session:
        [message_id] = (
            await session.exec(select(Message.id).where(col(Message.body) == nudge))
        ).all()
    assert (await history(stack, message_id))[:3] == ["queued", "sending", "accepted"]
    await stack.work()  # a worker finds nothing to send again
    assert len(stack.creates(To=LEAD)) == 2
