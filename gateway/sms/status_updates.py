"""Applying a status Twilio reports for one of our texts, whoever brought it: a status callback
(`/twilio/sms/status`) or a status check that asked Twilio because the callback never came
(gateway/jobs/sms_status_checks.py). One path, so a checked status moves the message and the
lead exactly as the callback would have, and reports the same outcome for the caller to hand to
the engine (the play, its activities and their webhooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.models import Message, MessageStatus
from gateway.sms import errors, sender_status
from gateway.sms.outbox import queue_message
from gateway.sms.status import TextOutcome, advance

FAILURES = (MessageStatus.UNDELIVERED, MessageStatus.FAILED)


@dataclass(frozen=True)
class Applied:
    """What a status report left for the caller's transaction to do."""

    outcome: TextOutcome | None = None  # for the play: `gateway.engine.lifecycle.on_text`


async def apply_status(
    session: AsyncSession,
    message: Message,
    status: MessageStatus,
    *,
    error_code: int | None = None,
    twilio_sid: str | None = None,
    detail: str | None = None,
    at: datetime | None = None,
) -> Applied:
    """Move `message` to `status` if that is forward, and act on a failure (a resend is queued
    and its send staged in the same transaction); returns what the play hears.

    The caller has claimed the report (`claims.claim`), so a repeat of it never comes here."""
    moved = await advance(
        session,
        message.id,
        status,
        error_code=error_code,
        twilio_sid=twilio_sid,
        detail=detail,
        at=at,
    )
    # Only a status that moved the message acts: a late `undelivered` or `failed` after a
    # final status (say `delivered`) is history, never a resend or a flag.
    return await after_move(session, message, status, error_code) if moved else Applied()


async def after_move(
    session: AsyncSession, message: Message, status: MessageStatus, error_code: int | None
) -> Applied:
    """What a status that moved `message` acts on: a failure (`after_failure`)."""
    if status in FAILURES and error_code:
        return await after_failure(session, message, error_code)
    return Applied()


async def after_failure(session: AsyncSession, message: Message, code: int) -> Applied:
    """A text Twilio could not deliver: resend it later (handset away, sender set-up), or let
    the error policy say what it teaches about the lead and the play."""
    policy = errors.policy_for(code)
    if policy.action == errors.Action.RETRY_LATER:
        schedule = errors.RETRY_LATER_DELAYS
    elif policy.action == errors.Action.SENDER:
        schedule = errors.SENDER_RETRY_DELAYS
    else:
        return Applied(outcome=await errors.apply_error_policy(session, message, policy, code))
    root = message.retry_of or message.id
    query = select(Message.id).where(
        Message.account_id == message.account_id, Message.retry_of == root
    )
    tries = len((await session.exec(query)).all())
    delay = errors.retry_delay(schedule, tries + 1)
    retry_at = now() + timedelta(seconds=delay) if delay is not None else None
    if policy.action == errors.Action.SENDER:
        # Our number's set-up, not the lead: flag the number, tell the account, resend later.
        await sender_status.refused(session, message, code, policy.note, retry_at)
    if retry_at is None:
        return Applied()
    resend = await queue_message(
        session,
        account_id=message.account_id,
        phone=message.lead_phone,
        body=message.body,
        purpose=message.purpose,
        reason=f"resend after {code}",
        lead_id=message.lead_id,
        send_after=retry_at,
        retry_of=root,
    )
    if policy.action == errors.Action.SENDER:
        resend.gate_reason = sender_status.SENDER_UNAVAILABLE
        session.add(resend)
    return Applied()
