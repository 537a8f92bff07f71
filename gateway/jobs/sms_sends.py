"""The `sms.sends` job: an account's due texts, gated, claimed and sent in batches.

A text due now that goes through Redis (its process had no room to send it inline, the sweep
found it due, a sender Twilio refused works again) is not a job of its own but its account's
drain (`SMS_SEND.batched_by`): one run reads up to BATCH due texts with their leads in one
statement, gates and claims them in one transaction, sends them to Twilio at once, and records
what Twilio answered in one transaction, claiming the next batch while this one's requests are
out. A job per text cost about a millisecond of arq's own work and two transactions of its own
(bench/RESULTS.md §28); a batch shares them. Texts one commit queued due now for an account,
in a process that sends its own work (a batch of replies' next texts, in the worker), are sent
there by `send_these` the same way, a batch at a time (`gateway.work.inline`).

Nothing about a text changes but the company it keeps: the same gate under the same contact
lock, the same compare-and-set claim (queued -> sending) before its one request, so a text is
sent once however many runs (a drain, its own job, the sweep's) reach it, and a worker killed
mid-batch leaves `sending` rows that their own jobs reconcile with Twilio (the sweep's
`STALE_SENDING`). What does not fit a batch goes back to the text's own job:

- a text behind its lead's earlier text that is due now (it is in this batch, or being sent):
  its job looks again shortly, as arq's Retry would (the run reads on past it);
- a text whose request asks to be tried again (no answer from Twilio, a back-off): its job, for
  then;
- a batch whose gate or claim fails (a bug on odd data, the database's trouble): each of its
  texts, to fail or go through alone.

Locks, in the order every transaction takes them: a batch's contacts first, all of them, in
one order (so two runs of an account, or a run and a lead's `POST`, never hold one each while
waiting for the other's), then the texts' rows, as the gate and the claim write them, one text
per lead a batch (a lead's later text goes to its own job, which looks again shortly). The read
takes no row lock: a text read while a row lock was held first and a contact lock wanted second
could deadlock with a transaction that takes them the other way round (a play's takeover, a
STOP). So one run of an account goes at a time (its job id; a follow-up waits for the run),
and an account's burst is one worker's; accounts share the workers. A run that has sent for
`runs.RUN_SECONDS` hands on to a follow-up (`gateway.work.runs`). `send_these` reads only the
texts its commit queued, in the same lock order: a run that reads them too waits on their
contacts or finds them claimed, as an inline text's own job always could.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from arq import Retry
from redis.exceptions import RedisError
from sqlalchemy import bindparam, literal_column, or_, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from twilio.rest.api.v2010.account.message import MessageInstance

from gateway.clock import now
from gateway.contact_lock import lock_contacts
from gateway.db import UTCDateTime, numbered, numbered_values, transaction
from gateway.job_context import JobContext, job_context
from gateway.jobs import sms_send
from gateway.lead_number import account_numbers
from gateway.leads import lead_of_message
from gateway.models import Account, Direction, Lead, Message, MessageStatus, SenderNumber
from gateway.sms import sender
from gateway.work import SMS_SEND, SMS_SENDS, job, runs
from gateway.work.staging import Staged, handoff_to_redis, retry_later

log = logging.getLogger(__name__)

# Texts per batch: one read, one transaction to gate and claim them, as many requests at once,
# one transaction to record them. Gating and claiming holds SQLite's write lock for about a
# millisecond a text, so a batch keeps a new lead's transaction waiting a few dozen at most.
BATCH = 16


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question: the accounts with a queued text that is due (deferred work whose
    time came, a drain's job lost with Redis), other than one backing off (its own job's)."""
    query = (
        select(col(Message.account_id))
        .distinct()
        .where(
            col(Message.status) == MessageStatus.QUEUED,
            col(Message.send_after).is_(None) | (col(Message.send_after) <= moment),
            _NOT_BACKING_OFF,
        )
        .limit(limit)
    )
    return [(SMS_SENDS.job_id(a), a) for a in (await session.exec(query)).all()]


async def send_these(ctx: dict[str, Any], account_id: str, message_ids: Sequence[str]) -> str:
    """Send the texts one commit queued due now for `account_id` (a batch of replies' next
    texts), as a run does its batches: what `gateway.work.inline` runs in place of a job each,
    in the process that committed them. A text found no longer due (another run claimed it,
    the gate deferred it meanwhile) is left to whoever has it."""
    jc = job_context(ctx)
    outcomes: Counter[str] = Counter()
    for start in range(0, len(message_ids), BATCH):
        batch = await _claim(jc, account_id, these=message_ids[start : start + BATCH])
        outcomes.update(batch.outcomes)
        if batch.claimed:
            outcomes.update(await _send(jc, batch.claimed))
    return runs.summary(outcomes)


# A follow-up's waits for the account's run to end are arq Retries; the rows count the texts'
# real attempts.
@job(SMS_SENDS, due=due, max_tries=10_000, together=send_these)
async def send_due(ctx: dict[str, Any], account_id: str) -> str:
    """Send `account_id`'s due texts, a batch at a time, until none is left (arq job
    `sms.sends`); returns what became of them, for the log."""
    jc = job_context(ctx)
    # A follow-up while the account's run is running would read the same texts and wait on
    # its contacts, to find them claimed: it comes back once that run has ended (`runs`).
    sending: list[asyncio.Task[Counter[str]]] = []  # the previous batch's requests

    async def one_batch(after: runs.Cursor) -> _Batch:
        # Each batch's requests go while the next batch is claimed.
        batch = await _claim(jc, account_id, after)
        if sending:
            batch.outcomes.update(await sending.pop())
        if batch.claimed:
            sending.append(asyncio.create_task(_send(jc, batch.claimed)))
        return batch

    try:
        outcomes = await runs.run_batches(
            jc.redis, ctx, SMS_SENDS, account_id, one_batch, size=BATCH
        )
        if sending:
            outcomes.update(await sending.pop())
    finally:
        for task in sending:  # cancelled: its claimed texts are reconciled by their jobs
            task.cancel()
    return runs.summary(outcomes)


def _what(outcome: str) -> str:
    """An outcome without its particulars, to count in the log ("blocked", "deferred")."""
    return outcome.split(":", maxsplit=1)[0].split(" until ", maxsplit=1)[0]


@dataclass
class _Batch:
    read: list[str] = field(default_factory=list)  # the due texts read, by id
    after: runs.Cursor = runs.START  # the last one read (created_at, id)
    claimed: list[Message] = field(default_factory=list)  # to send now
    outcomes: Counter[str] = field(default_factory=Counter)  # what became of the others


async def _claim(
    jc: JobContext,
    account_id: str,
    after: runs.Cursor = runs.START,
    *,
    these: Sequence[str] = (),
) -> _Batch:
    """Read the account's next due texts after `after` (or those of `these` still due) and gate
    and claim them, in one transaction. A text it cannot decide in the batch goes to its own
    job (see the module)."""
    batch = _Batch()
    later: list[tuple[str, Retry]] = []
    try:
        async with transaction(jc.sessions, brief=True) as session:
            params = {
                "account_id": account_id,
                "moment": now(),
                "after_at": after[0],
                "after_id": after[1],
                "limit": BATCH,
                **numbered_values("id", these),
            }
            read = _due_among(len(these)) if these else _DUE
            rows = (await session.exec(read, params=params)).all()
            if not rows:
                return batch
            batch.read = [row[0].id for row in rows]
            batch.after = (rows[-1][0].created_at, rows[-1][0].id)
            # Every contact before any row, in one order (see the module).
            await lock_contacts(session, account_id, (row[0].lead_phone for row in rows))
            # The account's senders, once for the batch: each text picks among them.
            numbers = await account_numbers(session, account_id)
            firsts: dict[str, sender.Loaded] = {}  # a lead's first text in the batch
            for message, account, lead in rows:
                if message.lead_phone in firsts:  # the lead's earlier text is in this batch
                    later.append((message.id, Retry(defer=sender.EARLIER_TEXT_POLL_SECONDS)))
                    batch.outcomes["behind an earlier text"] += 1
                else:
                    firsts[message.lead_phone] = (message, account, lead)
            # The gate's facts about them all, under their locks, in one statement.
            asked = await sender.ask_batch(session, rows[0][1], list(firsts.values()), now())
            claims: list[sender.Claim] = []  # claimed together, after the loop
            for loaded in firsts.values():
                # A brief transaction's statements run on the event loop's thread on SQLite:
                # between texts, the process's requests get their turn.
                await asyncio.sleep(0)
                outcome = await _gate_and_claim(
                    jc, session, loaded, numbers, later, claims=claims, asked=asked
                )
                if isinstance(outcome, Message):
                    batch.claimed.append(outcome)
                else:
                    batch.outcomes[_what(outcome)] += 1
            won = await sender.claim_all(session, claims)
            lost = len(batch.claimed) - len(won)
            if lost:
                batch.claimed = [m for m in batch.claimed if m.id in won]
                batch.outcomes["claimed elsewhere"] += lost
    except Exception:
        if not batch.read:
            raise  # nothing was read: the database's trouble, and the job fails
        count = len(batch.read)
        log.exception("a batch of %d texts failed to claim; each goes to its own job", count)
        batch.claimed, batch.outcomes = [], Counter({"left to its own job": count})
        await handoff_to_redis(jc.redis, [Staged.now(SMS_SEND, i) for i in batch.read])
        return batch
    for message_id, retry in later:
        await retry_later(jc.redis, Staged.now(SMS_SEND, message_id), retry)
    return batch


async def _gate_and_claim(
    jc: JobContext,
    session: AsyncSession,
    loaded: tuple[Message, Account, Lead | None],
    numbers: Sequence[SenderNumber],
    later: list[tuple[str, Retry]],
    *,
    claims: list[sender.Claim],
    asked: dict[str, sender.Asked],
) -> Message | str:
    message_id = loaded[0].id
    try:
        return await sms_send.gate_and_claim(
            jc, session, message_id, loaded, numbers, claims=claims, asked=asked[message_id]
        )
    except Retry as retry:  # the lead's earlier text goes first: nothing was written
        later.append((message_id, retry))
        return "behind an earlier text"
    except RedisError:
        # The sender's rate slot could not be asked (Redis is away), which comes before
        # anything is written of the text: the sweep finds it again, once Redis is back.
        log.warning("rate slot unavailable; message %s left to the sweep", message_id)
        return "rate slot unavailable"


async def _send(jc: JobContext, claimed: Sequence[Message]) -> Counter[str]:
    """Send the claimed texts at once, then record those Twilio took in one transaction."""
    answers = await asyncio.gather(*(_request(jc, message) for message in claimed))
    sent = [
        (message, answer)
        for message, answer in zip(claimed, answers, strict=True)
        if isinstance(answer, MessageInstance)
    ]
    if sent:
        await sms_send.record_sent(jc, sent)
    return Counter("sent" if isinstance(a, MessageInstance) else _what(a) for a in answers)


async def _request(jc: JobContext, message: Message) -> MessageInstance | str:
    try:
        return await sms_send.request(jc, message)
    except Retry as retry:  # no answer (reconciled first), or a back-off: its own job, then
        await retry_later(jc.redis, Staged.now(SMS_SEND, message.id), retry)
        return "to be tried again"
    except Exception:
        # As a failed job: the row stays `sending`, and its own job, from the sweep, finds out
        # from Twilio what became of it.
        log.exception("sending message %s failed; the sweep reconciles it", message.id)
        return "failed to send"


_NOT_BACKING_OFF = col(Message.gate_reason).is_distinct_from(sender.BACKOFF)
_DUE_ROWS = (
    _NOT_BACKING_OFF,
    col(Message.account_id) == bindparam("account_id"),
    # A literal, not a parameter: the planner proves the partial index `ix_messages_queued`
    # holds these rows only from the statement's own text.
    col(Message.status) == literal_column(f"'{MessageStatus.QUEUED.value}'"),
    col(Message.direction) == Direction.OUTBOUND,
    or_(
        col(Message.send_after).is_(None),
        col(Message.send_after) <= bindparam("moment", type_=UTCDateTime),
    ),
    tuple_(col(Message.created_at), col(Message.id))
    > tuple_(bindparam("after_at", type_=UTCDateTime), bindparam("after_id")),
)
# A batch: the due texts with their account and lead, oldest first, built once (no row lock:
# see the module).
_DUE = (
    select(Message, Account, Lead)
    .join(Account, col(Account.id) == col(Message.account_id))
    .outerjoin(Lead, lead_of_message())
    .where(*_DUE_ROWS)
    .order_by(col(Message.created_at), col(Message.id))
    .limit(bindparam("limit"))
)


@cache
def _due_among(count: int) -> Any:
    """`_DUE` among `count` texts named by id (`send_these`), built once per count."""
    return _DUE.where(col(Message.id).in_(numbered("id", count)))
