"""The `sms.send` job: the sms channel prepares a text (gate, sender, rate, claim), the job
hands it to Twilio once, and what became of it (`accepted`, `failed`, `opted_out`) goes to the
engine in the same transaction that records it (`gateway.engine.lifecycle.on_text`).

Idempotent under arq's re-runs: the row moves queued -> sending by compare-and-set before the
request; a row found in `sending` (a crash after Twilio answered, before we recorded it) is
reconciled by listing the sender's messages to that number, never blindly sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from arq import Retry
from redis.exceptions import RedisError
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession
from twilio.base.exceptions import TwilioRestException

from gateway.clock import now
from gateway.db import transaction
from gateway.engine import lifecycle
from gateway.job_context import JobContext, job_context
from gateway.models import Account, Lead, Message, MessageStatus
from gateway.sms import errors, sender, sender_status
from gateway.sms.outbox import queued_here
from gateway.sms.status import advance
from gateway.twilio_client import last_retry_after
from gateway.work import SMS_SEND, job, stage
from gateway.work.inline import runs_here
from gateway.work.staging import begun, staged_now

log = logging.getLogger(__name__)

# A row left `sending` this long is the sweep's (a worker killed mid-send): longer than the
# sender's own IN_FLIGHT_GRACE, after which the job reconciles it with Twilio's list.
STALE_SENDING = timedelta(minutes=2)


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question: every queued text that is due, and every stale `sending` row."""
    query = (
        select(Message.id)
        .where(
            or_(
                (col(Message.status) == MessageStatus.QUEUED)
                & (col(Message.send_after).is_(None) | (col(Message.send_after) <= moment)),
                (col(Message.status) == MessageStatus.SENDING)
                & (col(Message.attempt_started_at) <= moment - STALE_SENDING),
            )
        )
        .order_by(col(Message.created_at))
        .limit(limit)
    )
    return [(SMS_SEND.job_id(i), i) for i in (await session.exec(query)).all()]


# Deferrals and back-offs re-run the job (arq Retry); the row counts real attempts.
@job(SMS_SEND, due=due, max_tries=1000, inline=True)
async def send(ctx: dict[str, Any], message_id: str) -> str:
    """Send one queued message (arq job `sms.send`); returns what happened, for the log."""
    jc = job_context(ctx)
    # The common case in two transactions: the claim (which reads the row first), the outcome.
    prepared = await _prepare(jc, message_id)
    if prepared == sender.IN_FLIGHT:
        async with jc.sessions() as session:
            message = await session.get(Message, message_id)
        if message is None:
            return "missing"
        outcome = await _reconcile(jc, message)
        if outcome != "requeued":
            return outcome
        prepared = await _prepare(jc, message_id)
    if isinstance(prepared, str):
        return prepared
    return await _deliver(jc, prepared)


async def _prepare(jc: JobContext, message_id: str) -> Message | str:
    """Gate and claim the message under the contact lock; the claimed row, or why not."""
    async with transaction(jc.sessions, brief=True) as session:
        return await _gate_and_claim(jc, session, message_id)


async def _gate_and_claim(
    jc: JobContext, session: AsyncSession, message_id: str, loaded: sender.Loaded | None = None
) -> Message | str:
    """`_prepare` in the caller's transaction: the claimed row, or why not (what the gate
    decided goes to the text's play, a deferral is staged)."""
    prepared = await sender.prepare(jc, session, message_id, loaded=loaded)
    if prepared.failed is not None:
        await lifecycle.on_text(session, prepared.failed, "failed")
    if prepared.gate is not None:
        await lifecycle.on_gate_decision(
            session,
            prepared.gate.play_id,
            prepared.gate.decision,
            step_id=prepared.gate.step_id,
            message_id=message_id,
            repeated=prepared.gate.repeated,
        )
    if prepared.deferred_until is not None:
        stage(session, SMS_SEND, message_id, at=prepared.deferred_until)
    return prepared.result


async def claim_staged(session: AsyncSession, account: Account) -> set[str]:
    """Gate and claim, in the caller's transaction, the texts it staged to send now, when this
    process sends them itself once it commits (`gateway.work.inline`): the commit makes the
    claim, and only the request to Twilio and its outcome are left (`_deliver`), with no
    transaction of their own to read the text again, gate it and claim it.

    Speed to lead: `POST /v1/plays` queues a lead's first text, and this is its send. Nothing
    about the text changes but the transaction: the same gate, contact lock and claim, so a
    crash after the commit leaves a `sending` row, which the job reconciles with Twilio (as
    after a crash once the job's own claim committed). A text the gate defers is staged for
    then; one it blocks is done. Returns the ids of the texts the gate was asked about here.

    `account`: the account whose texts these are. The texts (`outbox.queued_here`) and their
    leads are the ones this transaction wrote, found in the session without a read."""
    ctx = runs_here(session)
    if ctx is None:
        return set()
    jc = job_context(ctx)
    decided: set[str] = set()
    for message_id in staged_now(session, SMS_SEND):
        message = queued_here(session, message_id)
        if message is None or message.account_id != account.id:
            continue  # not a text this session queued for the account: its job sends it
        lead = await session.get(Lead, message.lead_id) if message.lead_id is not None else None
        if lead is not None and lead.account_id != message.account_id:
            lead = None  # as `sender.prepare` joins them: within the text's account
        try:
            claimed = await _gate_and_claim(jc, session, message_id, (message, account, lead))
        except Retry:
            continue  # the lead's earlier text goes first: the job waits for it, as staged
        except RedisError:
            # The sender's rate slot could not be asked (Redis is away), which comes before
            # anything is written of the text: the job sends it, once Redis is back.
            log.warning("rate slot unavailable; message %s left to its job", message_id)
            continue
        decided.add(message_id)
        if isinstance(claimed, Message):
            begun(session, SMS_SEND, message_id, partial(_deliver_claimed, claimed))
        else:
            begun(session, SMS_SEND, message_id, None)
    return decided


async def _deliver_claimed(message: Message, ctx: Mapping[str, Any]) -> str:
    return await _deliver(job_context(ctx), message)


async def _deliver(jc: JobContext, message: Message) -> str:
    """The one request to Twilio, then record what it answered."""
    callback = f"{jc.settings.base_url}/twilio/sms/status?message_id={message.id}"
    options: dict[str, Any] = {"status_callback": callback}
    if message.validity_period:
        options["validity_period"] = message.validity_period
    try:
        result = await jc.twilio.messages.create_async(
            to=message.lead_phone, from_=message.from_number, body=message.body, **options
        )
    except TwilioRestException as exc:
        return await _failed(
            jc, message, exc.code, exc.status, str(exc.msg), retry_after=last_retry_after()
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Did Twilio get it? Unknown: leave it `sending`; the next run reconciles.
        log.warning("sms.send outcome unknown message=%s: %s", message.id, exc)
        raise Retry(defer=sender.IN_FLIGHT_GRACE.total_seconds() + 1) from None
    # Brief unless the text was a try on a sender Twilio refused: its success releases every
    # text held for that number.
    held = message.gate_reason == sender_status.SENDER_UNAVAILABLE
    async with transaction(jc.sessions, brief=not held) as session:
        await advance(
            session,
            message.id,
            MessageStatus.ACCEPTED,
            twilio_sid=result.sid,
            num_segments=int(result.num_segments) if result.num_segments else None,
            detail=f"twilio status {result.status}",
        )
        await sender.confirm_ledger(session, message, result.sid)
        await lifecycle.on_text(session, message, "accepted")
        if held:
            for held_id in await sender_status.recovered(session, message):
                stage(session, SMS_SEND, held_id)
    log.info("sms sent message=%s sid=%s account=%s", message.id, result.sid, message.account_id)
    return "sent"


async def _failed(
    jc: JobContext,
    message: Message,
    code: int | None,
    http_status: int | None,
    text: str,
    *,
    retry_after: float | None = None,
) -> str:
    policy = errors.policy_for(code, http_status)
    if policy.action == errors.Action.RETRY:
        delay = errors.retry_delay(errors.RETRY_DELAYS, message.attempts, retry_after)
        if delay is not None:
            async with transaction(jc.sessions) as session:
                await sender.requeue(session, message.id, f"Twilio {code}: {policy.note}", code)
            raise Retry(defer=delay)
    if policy.action == errors.Action.SENDER:
        async with transaction(jc.sessions) as session:
            retry_at = await sender_status.hold(session, message, code, text, policy.note)
            if retry_at is not None:
                stage(session, SMS_SEND, message.id, at=retry_at)
        if retry_at is not None:
            return f"held: sender {message.from_number} refused ({code})"
    async with transaction(jc.sessions) as session:
        await advance(
            session, message.id, MessageStatus.FAILED, error_code=code, error_message=text
        )
        outcome = await errors.apply_error_policy(session, message, policy, code)
        await lifecycle.on_text(session, message, outcome)
    return f"failed: {code}"


async def _reconcile(jc: JobContext, message: Message) -> str:
    """A row left `sending`: find out whether Twilio has it before trying again."""
    started = message.attempt_started_at or message.updated_at
    if now() - started < sender.IN_FLIGHT_GRACE:
        raise Retry(defer=(sender.IN_FLIGHT_GRACE - (now() - started)).total_seconds() + 1)
    listed = await jc.twilio.messages.list_async(
        to=message.lead_phone, from_=message.from_number, limit=50
    )
    async with jc.sessions() as session:
        known = set(
            (
                await session.exec(
                    select(Message.twilio_sid).where(
                        col(Message.twilio_sid).in_([m.sid for m in listed])
                    )
                )
            ).all()
        )
    since = started - sender.RECONCILE_WINDOW
    for found in listed:
        created = found.date_created
        if found.sid in known or found.body != message.body:
            continue
        if created is not None and created < since:
            continue
        async with transaction(jc.sessions) as session:
            await advance(
                session,
                message.id,
                MessageStatus.ACCEPTED,
                twilio_sid=found.sid,
                detail="reconciled after an interrupted send",
            )
            await sender.confirm_ledger(session, message, found.sid)
            await lifecycle.on_text(session, message, "accepted")
        return "reconciled"
    async with transaction(jc.sessions) as session:
        await sender.requeue(session, message.id, "interrupted send not found at Twilio", None)
    return "requeued"
