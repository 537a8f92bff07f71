"""The `webhooks.deliver` job: everything one subscription is owed now, delivered in batches,
and what each answer means.

A run claims a few rounds of owed deliveries in one statement, takes as many of the
subscription's slots as are free (`concurrency`, at most `policy.MAX_IN_FLIGHT` requests at a
time across every worker) and POSTs that many at once; as answers come back it sends the next
on the freed slots, records the answers and claims more, until nothing the subscription is owed
can go now. One run per subscription is queued at a time (the job id); staging while one runs
enqueues a follow-up a second later (`work.staging.again`).

The claim moves each claimed delivery's `next_attempt_at` one lease ahead (`claim_lease`), so no
other run takes it meanwhile (on PostgreSQL the claim also skips rows another run has locked);
recording the outcome sets it for real. A worker that dies mid-batch leaves its claims to run
out: due again after the lease, the sweep finds them (at-least-once, as for a crash between the
POST and the record; receivers deduplicate on `Gateway-Event-Id`). Only the oldest delivery a
play still owes the subscription can be claimed, so a play's activities arrive in order.

2xx: delivered. 410: the endpoint is gone; the subscription is disabled and what it was owed
is cancelled. A URL that can never work (refused by its text, e.g. a stored URL with a line
break): dead-lettered at once, with the reason. Anything else (other statuses, timeouts, refused
addresses): retried on `policy.RETRY_SCHEDULE` with jitter, Retry-After as a floor, then
dead-lettered. Breaker open: nothing is claimed until its probe is due; then one delivery goes,
and its success closes the breaker and the run goes on.

Why batches: a job per delivery cost about a millisecond of arq and twenty Redis round trips,
two more for its slot, and a transaction to load it, for a POST that takes one against a nearby
receiver (bench/RESULTS.md §17). A job queued by an older release names a delivery, not a
subscription: it finds no subscription and ends, and the sweep enqueues the right one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import webhook_policy as policy
from gateway.clock import now
from gateway.db import SessionFactory, transaction, unindexed
from gateway.errors import REDIS_LOST
from gateway.job_context import JobContext, job_context
from gateway.models import DeliveryStatus, WebhookDelivery, WebhookPolicy, WebhookSubscription
from gateway.webhooks import concurrency, delivered, due, sending, signing
from gateway.webhooks.due import owed_now
from gateway.work import WEBHOOK_DELIVER, job, stage
from gateway.work.staging import again, wait_for_run

log = logging.getLogger(__name__)

# A run holds at most this many times MAX_IN_FLIGHT deliveries sent and not yet recorded
# (answered, their records waiting on a commit); a worker killed mid-run sends at most those
# again.
RECORDING_WINDOW = 4
# A run claims up to this many times MAX_IN_FLIGHT deliveries ahead of its free slots: with 8
# slots a claim served about 4 requests, and its transaction, with the subscription's read,
# was a third of a delivery's CPU (bench/RESULTS.md §19). Claimed and not yet sent, they are
# not sent again after a kill, only delayed until their lease ends.
CLAIM_AHEAD = 4
# A run that has delivered for this long hands on to a follow-up job, well inside the job
# timeout, so a subscription with a deep backlog never ends a run by being cancelled.
RUN_SECONDS = 20.0


def claim_lease() -> timedelta:
    """How long a claimed delivery is held for its run: as long as its slot's lease (a request
    takes at most REQUEST_TIMEOUT), read when it is taken, so a drill that shortens one
    shortens both."""
    return timedelta(seconds=concurrency.LEASE_SECONDS)


@dataclass(frozen=True)
class Claimed:
    """A delivery this run has claimed, in plain values."""

    id: str
    account_id: str
    order_key: str | None
    event_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    subscription: WebhookSubscription
    allow_private: bool
    deliveries: list[Claimed]
    lease_until: datetime  # the claim holds them until then


@dataclass(frozen=True, eq=False)
class _Waiting:
    """A claimed delivery waiting for a slot."""

    batch: Batch
    delivery: Claimed
    claimed_at: float  # monotonic


@dataclass(frozen=True)
class _Slot:
    token: str
    taken_at: float  # monotonic


# Waits for the subscription's slots, or for its run to end, are arq Retries; the rows count
# the real attempts.
@job(WEBHOOK_DELIVER, due=due.due, tidy=due.expire, max_tries=10_000)
async def deliver(ctx: dict[str, Any], subscription_id: str) -> str:
    """Deliver what `subscription_id` is owed now (arq job `webhooks.deliver`); returns what
    happened, for the log."""
    jc = job_context(ctx)
    # A follow-up (or a retry's job) while the subscription's run is running: that run may
    # still claim what this one is for, and two runs would split the slots and the batches.
    await wait_for_run(jc.redis, ctx, WEBHOOK_DELIVER, subscription_id)
    return await _Run(jc, subscription_id).drain()


class _Run:
    """One run's window. Requests: at most MAX_IN_FLIGHT at a time (the subscription's slots).
    Sent and not yet recorded: at most RECORDING_WINDOW times as many (what a kill can make it
    send again). Claimed and not yet sent: up to CLAIM_AHEAD rounds of slots, so that one claim
    serves a few dozen requests while the endpoint answers well; the run claims again when
    fewer than a round are waiting.

    A request's slot passes to the next waiting delivery as soon as it is answered, before its
    answer is recorded (recording waits on a commit): a slow answer holds up one slot, not the
    batch it came in, and a slow commit holds up no request. Slots go back to Redis when the
    run ends, or once half their lease has run.

    Claimed and not yet sent are given back (due again at once) rather than held where they
    could outlive their lease or go out behind a failing endpoint: when the run ends, when one
    of its requests fails (from then on it claims only what its free slots can send, and an
    opening breaker stops its claims), and when one has waited half its lease for a slot.
    """

    def __init__(self, jc: JobContext, subscription_id: str) -> None:
        self.jc = jc
        self.subscription_id = subscription_id
        self.running: set[asyncio.Task[DeliveryStatus]] = set()
        self.waiting: deque[_Waiting] = deque()  # claimed, not yet sent, oldest first
        self.idle: list[_Slot] = []  # slots this run holds that no request uses
        self.busy = 0  # slots this run's requests use
        self.answered: list[_Slot] = []  # slots of the requests answered since the last look
        self.wake = asyncio.Event()  # a request was answered
        self.failed = False  # one of this run's requests failed
        self.ahead = True  # claims go ahead of the free slots
        self.settled: Counter[DeliveryStatus] = Counter()

    async def drain(self) -> str:
        started = time.monotonic()
        # The last claim found nothing: claim again only once nothing runs (what settles may
        # let a play's next activity go).
        exhausted = False
        failure: BaseException | None = None
        try:
            while True:
                over = failure is not None or time.monotonic() - started > RUN_SECONDS
                if over or (self.failed and self.ahead):
                    self.ahead = False
                    await self._give_back_waiting()
                if not over and self._should_claim(exhausted):
                    exhausted = await self._claim_more() == 0
                if not await self._start_waiting() and not self.running:
                    # Another run has every slot. It claims again when one frees, but it
                    # may be past its last claim, so this run comes back for what it leaves.
                    await self._give_back_waiting()
                    raise Retry(defer=policy.BUSY_RETRY_SECONDS)
                if not self.running:  # and so none waiting: they would have started
                    if failure is not None:
                        raise failure
                    if over:
                        await again(self.jc.redis, WEBHOOK_DELIVER, self.subscription_id)
                    break
                failure = await self._settle_some() or failure
        finally:
            for task in self.running:  # cancelled: their claims run out and they go again
                task.cancel()
            await self._release(self.idle + self.answered)
        return ", ".join(f"{n} {status}" for status, n in self.settled.items()) or "none owed"

    def _should_claim(self, exhausted: bool) -> bool:
        if not self.running and not self.waiting:
            return True  # the only way to learn whether anything is owed
        if exhausted or len(self.waiting) >= policy.MAX_IN_FLIGHT:
            return False
        return self._claim_limit() >= max(1, policy.MAX_IN_FLIGHT // 2)

    def _claim_limit(self) -> int:
        if self.ahead:
            return CLAIM_AHEAD * policy.MAX_IN_FLIGHT - len(self.waiting)
        return policy.MAX_IN_FLIGHT - self.busy - len(self.waiting)  # what free slots can send

    async def _claim_more(self) -> int:
        """Claim up to `_claim_limit()` deliveries to wait for slots; how many."""
        batch = await _claim(self.jc.sessions, self.subscription_id, self._claim_limit())
        if batch is None:
            return 0
        claimed_at = time.monotonic()
        self.waiting.extend(_Waiting(batch, d, claimed_at) for d in batch.deliveries)
        return len(batch.deliveries)

    async def _start_waiting(self) -> bool:
        """Send waiting deliveries on the slots the run holds or can take; False when it has
        none to send and can take none."""
        moment = time.monotonic()
        # A slot or a claim older than half its lease is not used (the two leases are one).
        horizon = moment - concurrency.LEASE_SECONDS / 2
        old = [slot for slot in self.idle if slot.taken_at < horizon]
        if old:
            self.idle = [slot for slot in self.idle if slot.taken_at >= horizon]
            await self._release(old)
        window = RECORDING_WINDOW * policy.MAX_IN_FLIGHT
        sendable = min(len(self.waiting), window - len(self.running))
        wanted = min(sendable, policy.MAX_IN_FLIGHT - self.busy) - len(self.idle)
        # Slots a few at a time (a round trip each time), unless none is held at all.
        if wanted > 0 and (self.busy == 0 or wanted >= max(1, policy.MAX_IN_FLIGHT // 2)):
            tokens = await concurrency.acquire(self.jc.redis, self.subscription_id, wanted)
            self.idle.extend(_Slot(token, moment) for token in tokens)
        if self.waiting and not self.idle and self.busy == 0:
            return False
        stale: list[_Waiting] = []
        while self.waiting and self.idle and len(self.running) < window:
            waiting = self.waiting.popleft()
            if waiting.claimed_at < horizon:
                stale.append(waiting)
                continue
            self.busy += 1
            task = self._attempt(waiting.batch, waiting.delivery, self.idle.pop())
            self.running.add(asyncio.create_task(task))
        await _unclaim(self.jc.sessions, stale)
        return True

    async def _attempt(self, batch: Batch, delivery: Claimed, slot: _Slot) -> DeliveryStatus:
        subscription = batch.subscription
        try:
            outcome = await sending.post(
                self.jc.http,
                subscription.url,
                delivery.payload,
                signing_secrets=signing.valid_secrets(subscription, now()),
                delivery_id=delivery.id,
                https_required=self.jc.settings.environment != "development",
                allow_private=batch.allow_private,
            )
            self.failed = self.failed or not outcome.delivered
        finally:
            self.answered.append(slot)
            self.wake.set()
        status = await _record(self.jc.sessions, delivery, subscription, outcome)
        log.info(
            "webhook delivery=%s event=%s subscription=%s account=%s: %s -> %s",
            delivery.id,
            delivery.event_id,
            subscription.id,
            delivery.account_id,
            sending.describe(outcome),
            status,
        )
        return status

    async def _settle_some(self) -> BaseException | None:
        """Wait for a request to be answered or a delivery recorded; the answered requests'
        slots are free for the waiting deliveries. The first failure to record one, if any
        (the others still finish)."""
        waking = asyncio.ensure_future(self.wake.wait())
        try:
            done, _ = await asyncio.wait(
                {waking, *self.running}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waking.cancel()
        self.wake.clear()
        answered, self.answered = self.answered, []
        self.busy -= len(answered)
        self.idle.extend(answered)
        failure: BaseException | None = None
        for task in self.running & done:
            self.running.discard(task)
            if task.exception() is not None:
                failure = failure or task.exception()
            else:
                self.settled[task.result()] += 1
        return failure

    async def _give_back_waiting(self) -> None:
        """The claimed deliveries still waiting will not be sent by this run."""
        unsent, self.waiting = list(self.waiting), deque()
        await _unclaim(self.jc.sessions, unsent)

    async def _release(self, slots: list[_Slot]) -> None:
        """Give slots back; if Redis cannot be reached, their leases end them."""
        tokens = [slot.token for slot in slots]
        try:
            await concurrency.release(self.jc.redis, self.subscription_id, tokens)
        except REDIS_LOST:
            log.warning("webhook slots of subscription=%s left to run out", self.subscription_id)


async def _claim(sessions: SessionFactory, subscription_id: str, limit: int) -> Batch | None:
    """The subscription and up to `limit` deliveries claimed for this run: none when it is
    gone, disabled (what it was owed is cancelled) or its breaker is open and the probe not
    due; one while a due probe is this run's to send."""
    moment = now()
    async with transaction(sessions, brief=True) as session:
        row = (
            await session.exec(_SUBSCRIPTION, params={"subscription_id": subscription_id})
        ).first()
        if row is None:
            return None
        subscription, allow_private = row
        if not subscription.enabled:
            disabled = True
        else:
            disabled = False
            if subscription.breaker_probe_at is not None:
                if not await _claim_probe(session, subscription, moment):
                    return None
                limit = 1  # the probe
            lease_until = moment + claim_lease()
            params = {
                "account": subscription.account_id,
                "subscription": subscription.id,
                "moment": moment,
                "limit": limit,
                "lease_until": lease_until,
            }
            connection = await session.connection()
            rows = (await connection.execute(_CLAIM, params)).all()
    if disabled:
        # Owed to a subscription disabled meanwhile: cancelled, as disabling it cancels (not
        # brief: it may be many rows).
        async with transaction(sessions) as session:
            await cancel_owed(session, subscription, moment, "subscription disabled")
        return None
    claimed = [
        Claimed(
            id=r.id,
            account_id=r.account_id,
            order_key=r.order_key,
            event_id=r.event_id,
            payload=r.payload,
        )
        for r in rows
    ]
    return Batch(subscription, bool(allow_private), claimed, lease_until)


async def _unclaim(sessions: SessionFactory, unsent: list[_Waiting]) -> None:
    """End the claims of deliveries their run will not send: due at once, for a later claim.
    Only while still pending and held by the claim that took them."""
    if not unsent:
        return
    claims: dict[tuple[str, datetime], list[str]] = {}
    for waiting in unsent:
        batch = waiting.batch
        claims.setdefault((batch.subscription.account_id, batch.lease_until), []).append(
            waiting.delivery.id
        )
    moment = now()
    async with transaction(sessions, brief=True) as session:
        connection = await session.connection()
        for (account, lease_until), ids in claims.items():
            params = {"account": account, "ids": ids, "lease_until": lease_until, "moment": moment}
            await connection.execute(_UNCLAIM, params)


# `_claim`'s statements, built once.
_SUBSCRIPTION = (
    select(WebhookSubscription, WebhookPolicy.allow_private_addresses)
    .outerjoin(WebhookPolicy, col(WebhookPolicy.account_id) == col(WebhookSubscription.account_id))
    .where(WebhookSubscription.id == bindparam("subscription_id"))
)
_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
# The oldest deliveries that can go now; uncorrelated, so that it reads the table itself
# inside the UPDATE of it. On PostgreSQL, rows another run has locked are skipped, not waited
# for.
_CLAIMABLE = (
    select(WebhookDelivery.id)
    .where(
        WebhookDelivery.account_id == bindparam("account"),
        WebhookDelivery.subscription_id == bindparam("subscription"),
        owed_now(bindparam("moment"), one_subscription=True),
    )
    .order_by(col(WebhookDelivery.activity_id))
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
    .correlate(None)
)
_CLAIM = (
    update(_DELIVERIES)
    # By id alone: with the status here too, SQLite's planner (it has no statistics) read every
    # pending delivery by the status index instead of the claimed ones by their keys. The
    # subquery's conditions are enough: on SQLite it runs under the write lock, and on
    # PostgreSQL FOR UPDATE checks them again on the row it locks.
    .where(_DELIVERIES.c.id.in_(_CLAIMABLE))
    .values(next_attempt_at=bindparam("lease_until"))
    .returning(
        _DELIVERIES.c.id,
        _DELIVERIES.c.account_id,
        _DELIVERIES.c.order_key,
        _DELIVERIES.c.event_id,
        _DELIVERIES.c.payload,
    )
)

_UNCLAIM = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.account_id == bindparam("account"),
        _DELIVERIES.c.id.in_(bindparam("ids", expanding=True)),
        unindexed(_DELIVERIES.c.status) == DeliveryStatus.PENDING,
        _DELIVERIES.c.next_attempt_at == bindparam("lease_until"),
    )
    .values(next_attempt_at=bindparam("moment"))
)


async def _claim_probe(
    session: AsyncSession, subscription: WebhookSubscription, moment: datetime
) -> bool:
    """Breaker open: whoever moves the probe time forward sends the one probe."""
    claimed = await session.exec(
        update(WebhookSubscription)
        .where(
            col(WebhookSubscription.id) == subscription.id,
            col(WebhookSubscription.breaker_probe_at).is_not(None),
            col(WebhookSubscription.breaker_probe_at) <= moment,
        )
        .values(breaker_probe_at=moment + policy.BREAKER_PROBE_EVERY)
    )
    return claimed.rowcount == 1


async def _record(
    sessions: SessionFactory,
    delivery: Claimed,
    subscription: WebhookSubscription,
    outcome: sending.Outcome,
) -> DeliveryStatus:
    """Write the attempt's outcome onto the delivery and the subscription's health.

    A success (the common case) is recorded together with the process's other successes of the
    moment (gateway/webhooks/delivered.py). A failure locks the subscription row only for a 410
    (rare); its failure counter moves by atomic UPDATEs, so deliveries to one busy subscription
    don't queue on its row.
    """
    moment = now()
    if outcome.delivered:
        success = delivered.Success(
            delivery_id=delivery.id,
            account_id=delivery.account_id,
            subscription_id=subscription.id,
            order_key=delivery.order_key,
            probing=subscription.breaker_probe_at is not None,
            moment=moment,
            status_code=outcome.status_code,
            excerpt=outcome.excerpt,
            error=outcome.error,
        )
        return await delivered.record(sessions, success)
    # Brief unless the endpoint is gone: that cancels everything owed to it.
    async with transaction(sessions, brief=not outcome.gone) as session:
        locked = await session.get(
            WebhookSubscription, subscription.id, with_for_update=outcome.gone
        )
        counted = (
            await session.exec(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id) == delivery.id,
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                )
                .values(
                    attempts=col(WebhookDelivery.attempts) + 1,
                    total_attempts=col(WebhookDelivery.total_attempts) + 1,
                    last_attempt_at=moment,
                    updated_at=moment,
                    last_status_code=outcome.status_code,
                    last_response=outcome.excerpt,
                    last_error=outcome.error,
                )
                .returning(col(WebhookDelivery.attempts))
            )
        ).first()
        if locked is None or counted is None:
            return await _status(session, delivery.id)
        attempts = int(counted[0])
        if outcome.gone:
            await _settle(session, delivery.id, DeliveryStatus.CANCELLED, moment)
            await _disable(session, locked, moment)
            return DeliveryStatus.CANCELLED
        breaker_open = await _failed(session, locked, moment, outcome.retry_after)
        delay = None if outcome.permanent else policy.retry_delay(attempts, outcome.retry_after)
        if delay is None:
            end = (
                "not retried: the URL can never work" if outcome.permanent else "retries exhausted"
            )
            why = f"{sending.describe(outcome)}; {end}"[:500]
            await _settle(session, delivery.id, DeliveryStatus.DEAD, moment, why)
            return DeliveryStatus.DEAD
        retry_at = moment + timedelta(seconds=delay)
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == delivery.id)
            .values(next_attempt_at=retry_at)
        )
        if not breaker_open:  # while it is open, the sweep brings each probe when it is due
            stage(session, WEBHOOK_DELIVER, subscription.id, at=retry_at)
        return DeliveryStatus.PENDING


async def _status(session: AsyncSession, delivery_id: str) -> DeliveryStatus:
    found = await session.get(WebhookDelivery, delivery_id)
    return found.status if found is not None else DeliveryStatus.CANCELLED


async def _settle(
    session: AsyncSession,
    delivery_id: str,
    status: DeliveryStatus,
    moment: datetime,
    why: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "next_attempt_at": None, "updated_at": moment}
    if why is not None:
        values["last_error"] = why
    await session.exec(
        update(WebhookDelivery).where(col(WebhookDelivery.id) == delivery_id).values(**values)
    )


async def _failed(
    session: AsyncSession,
    subscription: WebhookSubscription,
    moment: datetime,
    retry_after: float | None,
) -> bool:
    """Count a failure; the one that reaches BREAKER_THRESHOLD opens the breaker. True while
    the breaker is open."""
    counted = (
        await session.exec(
            update(WebhookSubscription)
            .where(col(WebhookSubscription.id) == subscription.id)
            .values(
                consecutive_failures=col(WebhookSubscription.consecutive_failures) + 1,
                updated_at=moment,
            )
            .returning(
                col(WebhookSubscription.consecutive_failures),
                col(WebhookSubscription.breaker_probe_at),
            )
        )
    ).one()
    failures, probe_at = int(counted[0]), counted[1]
    if probe_at is not None:
        return True
    if failures < policy.BREAKER_THRESHOLD:
        return False
    wait = max(policy.BREAKER_PROBE_EVERY.total_seconds(), retry_after or 0.0)
    opened = await session.exec(
        update(WebhookSubscription)
        .where(
            col(WebhookSubscription.id) == subscription.id,
            col(WebhookSubscription.breaker_probe_at).is_(None),
        )
        .values(breaker_opened_at=moment, breaker_probe_at=moment + timedelta(seconds=wait))
    )
    if opened.rowcount == 1:
        log.warning(
            "webhook breaker open subscription=%s account=%s after %d failures",
            subscription.id,
            subscription.account_id,
            failures,
        )
    return True


async def _disable(
    session: AsyncSession, subscription: WebhookSubscription, moment: datetime
) -> None:
    """410 Gone: stop sending; what was owed is cancelled (replayable once re-enabled)."""
    subscription.enabled = False
    subscription.disabled_reason = f"the endpoint answered 410 Gone at {moment.isoformat()}"
    log.warning("webhook subscription=%s disabled by 410 Gone", subscription.id)
    await cancel_owed(session, subscription, moment, "subscription disabled: endpoint 410 Gone")


async def cancel_owed(
    session: AsyncSession, subscription: WebhookSubscription, moment: datetime, why: str
) -> None:
    """Cancel every delivery still owed to `subscription`."""
    await session.exec(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.account_id) == subscription.account_id,
            col(WebhookDelivery.subscription_id) == subscription.id,
            col(WebhookDelivery.status) == DeliveryStatus.PENDING,
        )
        .values(
            status=DeliveryStatus.CANCELLED, next_attempt_at=None, last_error=why, updated_at=moment
        )
    )
