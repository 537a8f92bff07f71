"""The `sms.statuses` job: Twilio's status callbacks for our texts, acted on in batches after
their webhook has answered.

`POST /twilio/sms/status` checks Twilio's signature and the parameters, appends the callback as
a pending claim (keyed by MessageSid and status, so a redelivery is the same claim) and
answers; this job takes the pending callbacks in batches as `claim_batches` says (oldest first,
each once, marked done in the transaction that acts on it). For each it does what the route
once did: move the text forward (never back: a late `sent` after `delivered` is history only),
and hand a failure to the sms channel's policy and the text's play
(`gateway.engine.lifecycle.on_text`), in the batch's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.engine import lifecycle
from gateway.job_context import job_context
from gateway.jobs import claim_batches
from gateway.jobs.claim_batches import Taken
from gateway.models import Message
from gateway.sms.status import FROM_TWILIO, moved, moved_row
from gateway.sms.status_updates import FAILURES, after_move, apply_status
from gateway.twilio_params import optional_count
from gateway.work import SMS_STATUSES, job

log = logging.getLogger(__name__)

CLAIM_KIND = "sms_status"  # the webhook_claims kind of a status callback
STATUSES = "sms"  # the job's one argument: one queue of callbacks, taken in order
# Callbacks per transaction. Most are one UPDATE and one INSERT, so a batch twice the inbox's
# still holds SQLite's write lock for a few milliseconds.
BATCH = 32
# The callback URL's own parameter (the text it reports on), kept beside Twilio's parameters in
# the claim; Twilio's names are capitalised, so it meets none of them.
MESSAGE_ID = "message_id"
# A generous bound on Twilio's error codes (5 digits): the route turns away a value past it.
MAX_ERROR_CODE = 999_999


# The sweep asks whether any is pending (its job lost with Redis, or failed).
due = claim_batches.due_while_pending(CLAIM_KIND, SMS_STATUSES, STATUSES)


@job(SMS_STATUSES, due=due)
async def take_statuses(ctx: dict[str, Any], statuses: str) -> int:
    """Act on the pending status callbacks until none are left; returns how many."""
    sessions = job_context(ctx).sessions
    return await claim_batches.drain(sessions, CLAIM_KIND, BATCH, _apply_all, "status callback")


async def _apply_all(session: AsyncSession, taken: Sequence[Taken], alone: bool) -> None:
    for callback in taken:
        await _apply(session, callback.params, callback.received_at)


async def _apply(session: AsyncSession, params: dict[str, Any], at: datetime) -> None:
    """One status callback (its parameters were checked by the route), dated when Twilio
    brought it, not when this job ran: a text's `sent_at` and history (and the compliance
    export's seconds from a STOP to its confirmation) say when Twilio reported it."""
    sid, status_text = params["MessageSid"], params["MessageStatus"]
    status = FROM_TWILIO.get(status_text.lower())
    error_code = optional_count(params, "ErrorCode", maximum=MAX_ERROR_CODE)
    message_id: str | None = params.get(MESSAGE_ID)
    # The common case, a status that moves our text forward, is one UPDATE (which returns the
    # row where a failure needs it). Anything else (a late status, no such row, a SID alone)
    # reads the row as below.
    if message_id and status in FAILURES:
        row = await moved_row(
            session, message_id, status, error_code=error_code, twilio_sid=sid, at=at
        )
        if row is not None:
            applied = await after_move(session, row, status, error_code)
            await lifecycle.on_text(session, row, applied.outcome)
            return
    elif (
        message_id
        and status is not None
        and await moved(session, message_id, status, error_code=error_code, twilio_sid=sid, at=at)
    ):
        return
    # Read afresh: an earlier callback of the batch may have moved the row under an object
    # the session already holds.
    fresh = {"populate_existing": True}
    message = (
        await session.get(Message, message_id, execution_options=fresh) if message_id else None
    )
    if message is None:
        query = select(Message).where(Message.twilio_sid == sid).execution_options(**fresh)
        message = (await session.exec(query)).first()
    if message is None or status is None:
        log.warning("status %s for unknown message sid=%s", status_text, sid)
        return
    # A SID is written once: a message that has one needs no UPDATE to set it (one statement
    # fewer on every callback of every text we send).
    new_sid = sid if message.twilio_sid is None else None
    applied = await apply_status(
        session, message, status, error_code=error_code, twilio_sid=new_sid, at=at
    )
    await lifecycle.on_text(session, message, applied.outcome)
