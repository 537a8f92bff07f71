"""The `plays.advance` job and its account's drain, `plays.due`: a play's steps whose time has
come (a drip's next text, a re-engagement, the step after a delay). Each play's steps run under
its lead's contact lock, so a reply and a timed step of the same lead never interleave.

A play whose step is due soon (a delay up to `kinds.MAX_DEFER_SECONDS`), or due now in a
process that runs it inline, has a job of its own. Anything else due now goes through Redis as
its account's drain (`PLAY_ADVANCE.batched_by`): the sweep finds the accounts with a play due (a
drip's step a day on, a re-engagement, a job lost with Redis), and one run reads up to BATCH of
the account's due plays with their leads in one statement, takes their contacts' locks in one
statement, in one order (as every transaction holding several does), and runs their steps in
one transaction, where a play each took a job and a transaction of its own. A batch that fails
(a bug on odd data) hands each of its plays to its own job, so that one play's trouble holds up
only that play. One run of an account goes at a time (its job id; a follow-up waits for it);
a run that has worked for `runs.RUN_SECONDS` hands on to a follow-up (`gateway.work.runs`).

A text a play's own job queues is gated and claimed in the step's transaction when this
process sends it (`sms_send.claim_staged`, as `POST /v1/plays` does for a lead's first text):
once it commits, only the request to Twilio and its outcome are left. The texts a batch queues
go to the process's inline runner together (the account's `sms.sends` drain's `together`: one
transaction gates and claims them, one records what Twilio answered); one text alone is
claimed in the batch's transaction, as a play's own job claims it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, literal_column, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.contact_lock import lock_contact, lock_contacts, reread, reread_all
from gateway.db import UTCDateTime, transaction
from gateway.engine.stepper import run_due
from gateway.job_context import JobContext, job_context
from gateway.jobs import sms_send
from gateway.models import Account, Lead, Play, PlayState
from gateway.sms import outbox
from gateway.work import PLAY_ADVANCE, PLAYS_DUE, job, runs, stage
from gateway.work.staging import Staged, handoff_to_redis

log = logging.getLogger(__name__)

# Plays per batch: one read, one lock statement, one transaction for their steps.
BATCH = 16


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question: the accounts with a running play whose time has come (a step due
    further out than Redis holds, a job lost with Redis, a step whose job failed)."""
    query = (
        select(col(Play.account_id))
        .distinct()
        .where(
            Play.state == PlayState.RUNNING,
            col(Play.paused).is_(False),
            col(Play.due_at) <= moment,
        )
        .limit(limit)
    )
    return [(PLAYS_DUE.job_id(a), a) for a in (await session.exec(query)).all()]


# `advance`'s read: the play with its lead and account (the play's own), built once.
_PLAY_AND_LEAD = (
    select(Play, Lead, Account)
    .join(Lead, col(Lead.id) == col(Play.lead_id))
    .join(Account, col(Account.id) == col(Play.account_id))
    .where(Play.id == bindparam("play_id"), col(Lead.account_id) == col(Play.account_id))
)


@job(PLAY_ADVANCE, inline=True)  # the sweep finds a lost one as its account's drain's
async def advance(ctx: dict[str, Any], play_id: str) -> str:
    """Run a play's due steps (arq job `plays.advance`)."""
    jc = job_context(ctx)
    async with transaction(jc.sessions, brief=True) as session:
        found = (await session.exec(_PLAY_AND_LEAD, params={"play_id": play_id})).first()
        if found is None or found[0].state != PlayState.RUNNING:
            return "not running"
        play, lead, account = found
        await lock_contact(session, play.account_id, lead.phone)
        await reread(session, play)
        outbox.hold_for_claim(session)  # its texts are written by their claims below
        queued = await _run(session, play, lead)
        if queued:
            await sms_send.claim_staged(session, account)
    return _outcome(queued)


async def _run(session: AsyncSession, play: Play, lead: Lead) -> int | None:
    """The play's due steps, under its contact's lock (held by the caller), and its next step
    staged; the texts they queued (None: the play is not running)."""
    if play.state != PlayState.RUNNING:
        return None
    queued = await run_due(session, play, lead)
    if play.state == PlayState.RUNNING and not play.paused and play.due_at is not None:
        stage(session, PLAY_ADVANCE, play.id, at=play.due_at, batch=play.account_id)
    return len(queued)


def _outcome(queued: int | None) -> str:
    """What came of a play's run, for the log."""
    return "not running" if queued is None else f"{queued} queued"


@job(PLAYS_DUE, due=due, max_tries=10_000)  # a follow-up's waits for the run are Retries
async def advance_due(ctx: dict[str, Any], account_id: str) -> str:
    """Run `account_id`'s due plays, a batch at a time, until none is left (arq job
    `plays.due`); returns what came of them, for the log."""
    jc = job_context(ctx)
    # A follow-up while the account's run is running would read the same plays and wait on
    # their contacts, to find them done: it comes back once that run has ended (`runs`).

    async def one_batch(after: runs.Cursor) -> _Batch:
        return await _advance_batch(jc, account_id, after)

    outcomes = await runs.run_batches(jc.redis, ctx, PLAYS_DUE, account_id, one_batch, size=BATCH)
    return runs.summary(outcomes)


@dataclass
class _Batch:
    read: list[str] = field(default_factory=list)  # the due plays read, by id
    after: runs.Cursor = runs.START  # the last one read (due_at, id)
    outcomes: Counter[str] = field(default_factory=Counter)


async def _advance_batch(jc: JobContext, account_id: str, after: runs.Cursor) -> _Batch:
    """Read the account's next due plays after `after` and run their steps, in one
    transaction; should it fail, each goes to its own job (see the module)."""
    batch = _Batch()
    try:
        async with transaction(jc.sessions, brief=True) as session:
            params = {
                "account_id": account_id,
                "moment": now(),
                "after_at": after[0],
                "after_id": after[1],
                "limit": BATCH,
            }
            rows = (await session.exec(_DUE, params=params)).all()
            if not rows:
                return batch
            batch.read = [play.id for play, _, _ in rows]
            batch.after = (_due_at(rows[-1][0]), rows[-1][0].id)
            # Every contact before any play is written, in one order (see the module).
            await lock_contacts(session, account_id, (lead.phone for _, lead, _ in rows))
            # As they are now that their contacts are held.
            await reread_all(session, [play for play, _, _ in rows])
            texts = 0
            for play, lead, _ in rows:
                # A brief transaction's statements run on the event loop's thread on SQLite:
                # between plays, the process's requests get their turn.
                await asyncio.sleep(0)
                if play.paused or play.due_at is None or play.due_at > now():
                    batch.outcomes["no longer due"] += 1  # a reply or a job took it meanwhile
                    continue
                queued = await _run(session, play, lead)
                batch.outcomes[_outcome(queued)] += 1
                texts += queued or 0
            if texts == 1:  # alone: claimed here (see the module)
                account = rows[0][2]  # every play's: the batch is the account's
                await sms_send.claim_staged(session, account)
    except Exception:
        if not batch.read:
            raise  # nothing was read: the database's trouble, and the job fails
        count = len(batch.read)
        log.exception("a batch of %d due plays failed; each goes to its own job", count)
        batch.outcomes = Counter({"left to its own job": count})
        await handoff_to_redis(jc.redis, [Staged.now(PLAY_ADVANCE, i) for i in batch.read])
    return batch


def _due_at(play: Play) -> datetime:
    assert play.due_at is not None  # read by `_DUE`, which wants one
    return play.due_at


# A batch: the account's running plays due by `moment`, with their leads and account, in the
# order they came due, after the last one read, built once (no row lock: see the module).
_DUE = (
    select(Play, Lead, Account)
    .join(Lead, col(Lead.id) == col(Play.lead_id))
    .join(Account, col(Account.id) == col(Play.account_id))
    .where(
        col(Play.account_id) == bindparam("account_id"),
        col(Lead.account_id) == col(Play.account_id),
        # A literal, not a parameter: the planner proves the partial index `ix_plays_running_due`
        # holds these rows only from the statement's own text.
        col(Play.state) == literal_column(f"'{PlayState.RUNNING.value}'"),
        col(Play.paused).is_(False),
        col(Play.due_at) <= bindparam("moment", type_=UTCDateTime),
        tuple_(col(Play.due_at), col(Play.id))
        > tuple_(bindparam("after_at", type_=UTCDateTime), bindparam("after_id")),
    )
    .order_by(col(Play.due_at), col(Play.id))
    .limit(bindparam("limit"))
)
