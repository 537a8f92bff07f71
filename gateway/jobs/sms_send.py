"""The `sms.send` job: the sms channel prepares a text (gate, sender, rate, claim), the job
hands it to Twilio once, and what became of it (`accepted`, `failed`, `opted_out`) goes to the
engine in the same transaction that records it (`gateway.engine.lifecycle.on_text`).

A text's own job is for a text deferred (the gate, a rate slot, a back-off), run inline after
the commit that queued it alone, or left `sending`; texts due now that go through Redis, or
that one commit queued together, are sent by their account's drain (`gateway.jobs.sms_sends`),
in batches, with `gate_and_claim`, `request` and `record_sent` from here.

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
from twilio.rest.api.v2010.account.message import MessageInstance

from gateway.clock import now
from gateway.db import transaction
from gateway.engine import lifecycle
from gateway.job_context import JobContext, job_context
from gateway.models import Account, Lead, Message, MessageStatus, SenderNumber
from gateway.sms import errors, outbox, sender, sender_status
from gateway.sms.outbox import queued_here
from gateway.sms.status import Accepted, advance, advance_accepted
from gateway.twilio_client import last_retry_after
from gateway.work import SMS_SEND, job, stage
from gateway.work.inline import runs_here
from gateway.work.staging import begun, staged_now

log = logging.getLogger(__name__)

# A row left `sending` this long is the sweep's (a worker killed mid-send): longer than the
# sender's own IN_FLIGHT_GRACE, after which the job reconciles it with Twilio's list.
STALE_SENDING = timedelta(minutes=2)


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question for texts' own jobs: every stale `sending` row (its worker died
    mid-send), which the job reconciles, and every queued text backing off (`sender.BACKOFF`:
    refused while its job waits in Redis; after a flush, due at once). Any other queued text
    that is due is its account's drain's (`gateway.jobs.sms_sends`)."""
    query = (
        select(Message.id)
        .where(
            or_(
                (col(Message.status) == MessageStatus.SENDING)
                & (col(Message.attempt_started_at) <= moment - STALE_SENDING),
                (col(Message.status) == MessageStatus.QUEUED)
                & (col(Message.gate_reason) == sender.BACKOFF),
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
        return await gate_and_claim(jc, session, message_id)


async def gate_and_claim(
    jc: JobContext,
    session: AsyncSession,
    message_id: str,
    loaded: sender.Loaded | None = None,
    numbers: Sequence[SenderNumber] | None = None,
    *,
    claims: list[sender.Claim] | None = None,
    asked: sender.Asked | None = None,
) -> Message | str:
    """`_prepare` in the caller's transaction: the claimed row, or why not (what the gate
    decided goes to the text's play, a deferral is staged). `loaded`, `numbers`, `claims`:
    what the caller read of the text and its account's senders, and the batch's claims it
    makes together, and the gate's facts it asked for the batch (`sender.prepare`)."""
    prepared = await sender.prepare(
        jc, session, message_id, loaded=loaded, numbers=numbers, claims=claims, asked=asked
    )
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
        held = outbox.take_held(session, message)
        try:
            claimed = await gate_and_claim(jc, session, message_id, (message, account, lead))
        except Retry:
            claimed = None  # the lead's earlier text goes first: the job waits for it, as staged
        except RedisError:
            # The sender's rate slot could not be asked (Redis is away), which comes before
            # anything is written of the text: the job sends it, once Redis is back.
            log.warning("rate slot unavailable; message %s left to its job", message_id)
            claimed = None
        if held:
            # Before the next text's gate, which asks about this one (the lead's texts ahead).
            await outbox.write_held(session, message)
        if claimed is None:
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
    answer = await request(jc, message)
    if isinstance(answer, str):
        return answer
    await record_sent(jc, [(message, answer)])
    return "sent"


async def request(jc: JobContext, message: Message) -> MessageInstance | str:
    """The one request to Twilio for a claimed text: what Twilio answered when it took the
    text (`record_sent` records it), or what became of a text it refused (recorded here). An
    answer that never came is an arq Retry: the row stays `sending` for the next run to
    reconcile."""
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
    return result


async def record_sent(jc: JobContext, sent: Sequence[tuple[Message, MessageInstance]]) -> None:
    """Record that Twilio took these claimed texts, in one transaction (a drain's batch, or
    one text). Should it fail, each is recorded alone, so that one text's trouble leaves the
    others recorded; a text that fails alone too stays `sending`, and the sweep's job finds it
    at Twilio (`STALE_SENDING`)."""
    try:
        await _record(jc, sent)
    except Exception:
        if len(sent) == 1:
            raise
        log.exception("recording %d sent texts failed; recording each alone", len(sent))
        for one in sent:
            try:
                await _record(jc, [one])
            except Exception:
                log.exception("recording sent text %s failed; the sweep reconciles it", one[0].id)


async def _record(jc: JobContext, sent: Sequence[tuple[Message, MessageInstance]]) -> None:
    # Brief unless a text was a try on a sender Twilio refused: its success releases every
    # text held for that number.
    held = any(m.gate_reason == sender_status.SENDER_UNAVAILABLE for m, _ in sent)
    accepted = [
        Accepted(
            message.id,
            str(result.sid),
            int(result.num_segments) if result.num_segments else None,
            f"twilio status {result.status}",
        )
        for message, result in sent
    ]
    async with transaction(jc.sessions, brief=not held) as session:
        await advance_accepted(session, accepted)
        await lifecycle.on_texts_accepted(session, [message for message, _ in sent])
        for message, result in sent:
            await sender.confirm_ledger(session, message, result.sid)
            if message.gate_reason == sender_status.SENDER_UNAVAILABLE:
                for held_id in await sender_status.recovered(session, message):
                    stage(session, SMS_SEND, held_id, batch=message.account_id)
    for message, result in sent:
        log.info(
            "sms sent message=%s sid=%s account=%s", message.id, result.sid, message.account_id
        )


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
            why = f"Twilio {code}: {policy.note}"
            async with transaction(jc.sessions) as session:
                await sender.requeue(session, message.id, why, code, backoff=True)
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
