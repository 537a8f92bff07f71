"""The status checks (cron `sms.check_statuses`): ask Twilio for the status of sent texts whose
status callbacks never came, and apply what it says as the callback would have.

A callback that meets the gateway down (a restart, an outage) is lost: Twilio does not send it
again. So every sent text without a final status carries `status_check_at`, set by
`status.advance` on each status change (gateway/sms/status_schedule.py says when); this sweep
claims the due ones in one conditional UPDATE, fetches each by its SID a few at a time, and
applies the answer through `status_updates.apply_status`, the callback's own path (claim, move
forward, error policy, resend), then hands what it reports to the engine as the callback route
does (the play, its activities and webhooks).

Safe with any number of workers: a row is claimed by moving its `status_check_at` to a lease
(`UPDATE ... WHERE status_check_at <= now`), and every later write is conditional on that lease
still being there, so of two workers one checks a message, and a callback arriving meanwhile
(which moves the row off the lease) always wins. A worker that dies mid-check leaves the lease,
and the message is checked again when it runs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from twilio.base.exceptions import TwilioRestException

from gateway.claims import claim
from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.engine import lifecycle
from gateway.job_context import JobContext, job_context
from gateway.jobs.sms_statuses import CLAIM_KIND
from gateway.models import Message
from gateway.sms.status import FROM_TWILIO, lower_statuses, note_event
from gateway.sms.status_schedule import CHECKS_END, next_check
from gateway.sms.status_updates import apply_status

log = logging.getLogger(__name__)

CHECK_JOB = "sms.check_statuses"
# Messages claimed per round (the sweep runs every 10 s), and Twilio fetches in flight at once:
# a few, so a backlog after an outage drains steadily without meeting Twilio's concurrency limit.
CHECK_LIMIT = 100
CHECK_CONCURRENCY = 8
# A claimed message's next check moves this far ahead while it is checked; a worker that dies
# mid-check leaves it, and the message is checked again after it.
CLAIM_LEASE = timedelta(minutes=10)
# A round stops waiting for Twilio after this (arq cancels a job at 60 s): what it did not
# finish is checked again when its lease runs out.
ROUND_SECONDS = 45.0
# Twilio answered with an error (5xx, 429) or not at all: the message is asked for again in a
# later round, this long after.
RETRY_AFTER_ERROR = timedelta(minutes=1)
# History entries of a message whose checks stopped (MessageEvent.status).
NOT_FOUND = "not_found"  # Twilio does not know its SID (404)
CHECKS_ENDED = "checks_ended"  # no final status CHECKS_END after its last change
DETAIL = "status check (no callback came)"


@dataclass(frozen=True)
class Due:
    """A message claimed for a check, and the lease that says the claim is still ours."""

    id: str
    account_id: str
    twilio_sid: str | None
    changed_at: datetime
    lease: datetime


async def check_statuses(ctx: dict[str, Any]) -> int:
    """Check every message whose status check is due (cron); returns how many were claimed."""
    jc = job_context(ctx)
    moment = now()
    claimed = await _claim(jc.sessions, moment, moment + CLAIM_LEASE)
    if not claimed:
        return 0
    bound = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def one(due: Due) -> str:
        async with bound:
            return await _check(jc, due)

    outcomes: Counter[str] = Counter()
    try:
        async with asyncio.timeout(ROUND_SECONDS):
            for outcome in await asyncio.gather(*(one(due) for due in claimed)):
                outcomes[outcome] += 1
    except TimeoutError:
        outcomes["unfinished (checked again after the lease)"] += 1
    log.info(
        "status checks: %d due, %s",
        len(claimed),
        ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items())),
    )
    return len(claimed)


async def _claim(sessions: SessionFactory, moment: datetime, lease: datetime) -> list[Due]:
    """Claim up to CHECK_LIMIT due messages, oldest due first, in one statement."""
    due = (
        select(Message.id)
        .where(col(Message.status_check_at) <= moment)
        .order_by(col(Message.status_check_at))
        .limit(CHECK_LIMIT)
    )
    statement = (
        update(Message)
        # Repeated outside the subquery: of two workers claiming at once, the second finds the
        # rows the first took no longer due (PostgreSQL re-reads a row it waited for).
        .where(col(Message.id).in_(due), col(Message.status_check_at) <= moment)
        .values(status_check_at=lease)
        .returning(
            col(Message.id),
            col(Message.account_id),
            col(Message.twilio_sid),
            col(Message.updated_at),
        )
    )
    async with transaction(sessions) as session:
        rows = (await session.exec(statement)).all()
    return [Due(row[0], row[1], row[2], row[3], lease) for row in rows]


async def _check(jc: JobContext, due: Due) -> str:
    """Fetch one message from Twilio and apply what it says; returns the outcome, for the log."""
    sessions, twilio = jc.sessions, jc.twilio
    if due.twilio_sid is None:  # nothing to ask Twilio about (not sent through it)
        await _stop(sessions, due, None, None)
        return "without a SID"
    try:
        found = await twilio.messages(due.twilio_sid).fetch_async()
    except TwilioRestException as exc:
        if exc.status == 404:
            await _stop(sessions, due, NOT_FOUND, f"Twilio does not know {due.twilio_sid}")
            return "unknown to Twilio"
        await _later(sessions, due, f"Twilio {exc.status} ({exc.code})")
        return "Twilio errors"
    except (aiohttp.ClientError, TimeoutError) as exc:
        await _later(sessions, due, f"{type(exc).__name__}: {exc}")
        return "Twilio errors"
    status_text = str(found.status or "")
    error_code = int(found.error_code) if found.error_code else None
    async with transaction(sessions) as session:
        message = await _still_ours(session, due)
        if message is None:
            return "settled meanwhile"
        status = FROM_TWILIO.get(status_text.lower())
        forward = status is not None and str(message.status) in lower_statuses(status)
        params = {"MessageSid": due.twilio_sid, "MessageStatus": status_text, "Source": "check"}
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        # Claimed like the callback it stands for: that callback, if it comes after all, is a
        # repeat (and a repeat of this check changes nothing).
        if (
            status is not None
            and forward
            and await claim(session, CLAIM_KIND, f"{due.twilio_sid}:{status_text}", params)
        ):
            applied = await apply_status(
                session, message, status, error_code=error_code, detail=DETAIL
            )
            await lifecycle.on_text(session, message, applied.outcome)
            log.info(
                "status check message=%s sid=%s account=%s: Twilio says %s%s",
                message.id,
                due.twilio_sid,
                due.account_id,
                status_text,
                f" ({error_code})" if error_code else "",
            )
            outcome = f"moved to {status_text}"
        else:
            outcome = f"still {message.status}"
        # A status that moved the message set its next check (or none, if final) and took it
        # off the lease; otherwise the schedule goes on from its last change.
        next_at = next_check(message.updated_at, now())
        if await _reschedule(session, due, next_at) and next_at is None:
            await _ended(session, due, status_text)
            outcome = "checks ended"
    return outcome


async def _still_ours(session: AsyncSession, due: Due) -> Message | None:
    """The message, if its claim still holds (no callback or other worker moved it since)."""
    message = await session.get(Message, due.id)
    if message is None or message.account_id != due.account_id:
        return None
    return message if message.status_check_at == due.lease else None


async def _reschedule(session: AsyncSession, due: Due, at: datetime | None) -> bool:
    """Set the next check of a message still on our lease; True when it was."""
    result = await session.exec(
        update(Message)
        .where(
            col(Message.id) == due.id,
            col(Message.account_id) == due.account_id,
            col(Message.status_check_at) == due.lease,
        )
        .values(status_check_at=at)
    )
    return bool(result.rowcount == 1)


async def _ended(session: AsyncSession, due: Due, status_text: str) -> None:
    note_event(
        session,
        due.id,
        CHECKS_ENDED,
        detail=f"no final status {CHECKS_END} after the last change; Twilio says "
        f"{status_text or 'nothing'}: no more checks",
    )
    log.warning(
        "status checks ended message=%s sid=%s account=%s: no final status %s after the last "
        "change (Twilio says %s)",
        due.id,
        due.twilio_sid,
        due.account_id,
        CHECKS_END,
        status_text or "nothing",
    )


async def _stop(sessions: SessionFactory, due: Due, why: str | None, detail: str | None) -> None:
    """No more checks for this message, with a history entry saying why (when there is one)."""
    async with transaction(sessions) as session:
        if not await _reschedule(session, due, None) or why is None:
            return
        note_event(session, due.id, why, detail=detail)
    log.warning(
        "status checks stopped message=%s sid=%s account=%s: %s",
        due.id,
        due.twilio_sid,
        due.account_id,
        detail,
    )


async def _later(sessions: SessionFactory, due: Due, why: str) -> None:
    """Twilio could not answer: ask again in a later round, within the schedule's bound."""
    moment = now()
    async with transaction(sessions) as session:
        if next_check(due.changed_at, moment) is None:
            if await _reschedule(session, due, None):
                await _ended(session, due, f"nothing ({why})")
            return
        await _reschedule(session, due, moment + RETRY_AFTER_ERROR)
    log.warning(
        "status check message=%s sid=%s account=%s: %s; asked again in %s",
        due.id,
        due.twilio_sid,
        due.account_id,
        why,
        RETRY_AFTER_ERROR,
    )
