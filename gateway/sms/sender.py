"""The `sms.send` job: gate, pick the sender, respect its rate, hand the text to Twilio once.

Idempotent under arq's re-runs: the row moves queued -> sending by compare-and-set before the
request; a row found in `sending` (a crash after Twilio answered, before we recorded it) is
reconciled by listing the sender's messages to that number, never blindly sent again.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import aiohttp
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from compliance.gate import Purpose as GatePurpose
from gateway import gate, optouts
from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.db import SessionFactory, transaction
from gateway.engine import lifecycle
from gateway.engine.starting import on_message_accepted, on_message_failed, on_opt_out
from gateway.models import (
    Account,
    Channel,
    Direction,
    Lead,
    LedgerEvent,
    LedgerSource,
    Message,
    MessageEvent,
    MessageStatus,
    OptOutEvent,
    PhoneStatus,
    Purpose,
    SenderNumber,
    SenderStatus,
)
from gateway.settings import Settings
from gateway.sms import errors, sender_status
from gateway.sms import notice as sms_notice
from gateway.sms.outbox import enqueue_send
from gateway.sms.ratelimit import SenderRateLimiter, rate_for
from gateway.sms.status import advance
from gateway.twilio_client import last_retry_after

log = logging.getLogger(__name__)

# A row left in `sending` younger than this may still have its request in flight (Twilio
# client timeout plus margin); older ones are reconciled.
IN_FLIGHT_GRACE = timedelta(seconds=30)
RECONCILE_WINDOW = timedelta(minutes=2)
RATE_SLOT = "rate_slot"  # gate_reason of a message waiting for its reserved sender slot
BEHIND_EARLIER = "behind_earlier_text"  # gate_reason: waits for the lead's earlier text
# A text whose lead has an earlier one due or being sent comes back after this long (a lead's
# queued texts leave a few a second, in order).
EARLIER_TEXT_POLL_SECONDS = 0.25


@dataclass
class SendContext:
    settings: Settings
    sessions: SessionFactory
    twilio: Client
    redis: ArqRedis
    limiter: SenderRateLimiter


def send_context(ctx: dict[str, Any]) -> SendContext:
    return SendContext(
        ctx["settings"], ctx["sessions"], ctx["twilio"], ctx["redis"], ctx["rate_limiter"]
    )


async def send(ctx: dict[str, Any], message_id: str) -> str:
    """Send one queued message (arq job `sms.send`); returns what happened, for the log."""
    sc = send_context(ctx)
    async with sc.sessions() as session:
        message = await session.get(Message, message_id)
    if message is None or message.direction != Direction.OUTBOUND:
        return "missing"
    if message.status == MessageStatus.SENDING:
        outcome = await _reconcile(sc, message)
        if outcome != "requeued":
            return outcome
    elif message.status != MessageStatus.QUEUED:
        return f"already {message.status}"
    prepared = await _prepare(sc, message_id)
    if isinstance(prepared, str):
        return prepared
    return await _deliver(sc, prepared)


async def _prepare(sc: SendContext, message_id: str) -> Message | str:
    """Gate and claim the message under the contact lock; the claimed row, or why not."""
    async with transaction(sc.sessions) as session:
        message = await session.get(Message, message_id)
        if message is None or message.status != MessageStatus.QUEUED:
            return "not queued"
        moment = now()
        # A reserved rate slot was waited for by arq's own (wall) clock; anything else is due
        # when its time has come by ours.
        early = message.send_after is not None and message.send_after > moment
        if early and message.gate_reason != RATE_SLOT:
            return "not due"
        account = await session.get(Account, message.account_id)
        assert account is not None
        await lock_contact(session, account.id, message.lead_phone)
        ahead = await _earlier_pending(session, message, moment)
        if ahead is not None and ahead <= moment:
            # The lead's earlier text goes first, and it is due now: look again in a moment
            # (its own job is running or about to).
            raise Retry(defer=EARLIER_TEXT_POLL_SECONDS)
        if ahead is not None:
            # The earlier text waits (quiet hours, the cap, a rate slot): this one waits as long
            # instead of asking again every second, and is looked at again when it may go.
            message.send_after, message.gate_reason = ahead, BEHIND_EARLIER
            message.updated_at = moment
            session.add(message)
            await session.flush()
            # Enqueued for a later moment, so the commit just below lands first.
            await enqueue_send(sc.redis, message.id, ahead)
            return f"behind an earlier text until {ahead.isoformat()}"
        lead = await session.get(Lead, message.lead_id) if message.lead_id else None
        if lead is not None and lead.phone_status != PhoneStatus.OK:
            await _finish(session, message, MessageStatus.FAILED, f"phone is {lead.phone_status}")
            await on_message_failed(session, message)
            return "phone flagged"
        decision = await gate.check(
            session,
            account,
            channel="sms",
            purpose=cast(GatePurpose, str(message.purpose)),
            phone=message.lead_phone,
            at=moment,
            state=lead.state if lead else None,
            postal_code=lead.postal_code if lead else None,
            initiated_contacts_last_24h=await gate.initiated_contacts(
                session, message.account_id, message.lead_phone, moment
            ),
            last_inbound_at=await _last_inbound(session, message),
            play_id=message.play_id,
        )
        await lifecycle.on_gate_decision(
            session,
            message.play_id,
            decision,
            step_id=message.step_id,
            message_id=message.id,
            # The same deferral found again (a sweep's second look): not a new decision.
            repeated=(message.gate_reason, message.send_after) == (decision.reason, decision.until),
        )
        if decision.action == "block":
            message.gate_reason = decision.reason
            await _finish(
                session, message, MessageStatus.BLOCKED, decision.detail or decision.reason
            )
            return f"blocked: {decision.reason}"
        if decision.action == "defer":
            assert decision.until is not None
            message.send_after, message.gate_reason = decision.until, decision.reason
            message.updated_at = moment
            session.add(message)
            session.add(
                MessageEvent(message_id=message.id, status="deferred", detail=decision.detail)
            )
            deferred_until = decision.until
        else:
            sender = await _choose_sender(session, message)
            if sender is None:
                await _finish(
                    session, message, MessageStatus.FAILED, "account has no sender number"
                )
                return "no sender"
            held_until = sender_status.wait_until(sender, message, moment)
            wait = 0.0 if held_until is not None else await _rate_slot(sc, message, sender)
            if held_until is not None:
                # Twilio refused this sender lately and the account has no other: wait for the
                # number's next try rather than ask again (gateway/sms/sender_status.py).
                message.send_after = held_until
                message.gate_reason = sender_status.SENDER_UNAVAILABLE
                message.updated_at = moment
                session.add(message)
                session.add(
                    MessageEvent(
                        message_id=message.id,
                        status="deferred",
                        detail=f"sender {sender.number} unavailable ({sender.status_code})",
                    )
                )
                deferred_until = held_until
            elif wait > 0:
                message.send_after = now() + timedelta(seconds=wait)
                message.gate_reason, message.updated_at = RATE_SLOT, moment
                session.add(message)
                deferred_until = message.send_after
            else:
                # The opt-out notice is decided now, at send time, and written by the claim.
                notice = await sms_notice.for_message(session, account, message, moment)
                if notice.failure is not None:
                    await _finish(session, message, MessageStatus.FAILED, notice.failure)
                    return "too long"
                return await _claim(
                    session,
                    message,
                    sender,
                    decision.validity_period,
                    moment,
                    notice=notice.values,
                    # A try on a flagged number keeps its reason, so its success clears the flag.
                    gate_reason=None
                    if sender.status == SenderStatus.OK
                    else sender_status.SENDER_UNAVAILABLE,
                )
    await enqueue_send(sc.redis, message_id, deferred_until)
    return f"deferred until {deferred_until.isoformat()}"


async def _rate_slot(sc: SendContext, message: Message, sender: SenderNumber) -> float:
    """Seconds until this message's send slot on `sender` (0: now)."""
    if not sc.settings.sms_rate_limits or message.gate_reason == RATE_SLOT:
        return 0.0  # limits off, or the slot was reserved on an earlier run
    if message.purpose == Purpose.CONFIRMATION:
        return 0.0  # a STOP/HELP answer must not wait behind a burst; Twilio queues it
    rate = rate_for(sender.kind, sender.messaging_service_sid is not None)
    return await sc.limiter.reserve(sender.number, rate)


async def _claim(
    session: AsyncSession,
    message: Message,
    sender: SenderNumber,
    validity_period: int | None,
    moment: datetime,
    *,
    notice: dict[str, Any],
    gate_reason: str | None = None,
) -> Message | str:
    """queued -> sending, by compare-and-set: of two runs, one wins (with its notice columns)."""
    claimed = await session.exec(
        update(Message)
        .where(col(Message.id) == message.id, col(Message.status) == MessageStatus.QUEUED)
        .values(
            status=MessageStatus.SENDING,
            from_number=sender.number,
            attempts=Message.attempts + 1,
            attempt_started_at=moment,
            validity_period=validity_period,
            gate_reason=gate_reason,
            updated_at=moment,
            **notice,
        )
    )
    if claimed.rowcount != 1:
        return "claimed elsewhere"
    session.add(MessageEvent(message_id=message.id, status=MessageStatus.SENDING))
    await session.refresh(message)
    return message


async def _deliver(sc: SendContext, message: Message) -> str:
    """The one request to Twilio, then record what it answered."""
    callback = f"{sc.settings.base_url}/twilio/sms/status?message_id={message.id}"
    options: dict[str, Any] = {"status_callback": callback}
    if message.validity_period:
        options["validity_period"] = message.validity_period
    try:
        result = await sc.twilio.messages.create_async(
            to=message.lead_phone, from_=message.from_number, body=message.body, **options
        )
    except TwilioRestException as exc:
        return await _failed(
            sc, message, exc.code, exc.status, str(exc.msg), retry_after=last_retry_after()
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Did Twilio get it? Unknown: leave it `sending`; the next run reconciles.
        log.warning("sms.send outcome unknown message=%s: %s", message.id, exc)
        raise Retry(defer=IN_FLIGHT_GRACE.total_seconds() + 1) from None
    async with transaction(sc.sessions) as session:
        await advance(
            session,
            message.id,
            MessageStatus.ACCEPTED,
            twilio_sid=result.sid,
            detail=f"twilio status {result.status}",
        )
        if result.num_segments:
            await session.exec(
                update(Message)
                .where(col(Message.id) == message.id)
                .values(num_segments=int(result.num_segments))
            )
        await _confirm_ledger(session, message, result.sid)
        await on_message_accepted(session, message)
        released = (
            await sender_status.recovered(session, message)
            if message.gate_reason == sender_status.SENDER_UNAVAILABLE
            else []
        )
    for held_id in released:
        await enqueue_send(sc.redis, held_id)
    log.info("sms sent message=%s sid=%s account=%s", message.id, result.sid, message.account_id)
    return "sent"


async def _failed(
    sc: SendContext,
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
            async with transaction(sc.sessions) as session:
                await _requeue(session, message.id, f"Twilio {code}: {policy.note}", code)
            raise Retry(defer=delay)
    if policy.action == errors.Action.SENDER:
        async with transaction(sc.sessions) as session:
            retry_at = await sender_status.hold(session, message, code, text, policy.note)
        if retry_at is not None:
            await enqueue_send(sc.redis, message.id, retry_at)
            return f"held: sender {message.from_number} refused ({code})"
    async with transaction(sc.sessions) as session:
        await advance(
            session, message.id, MessageStatus.FAILED, error_code=code, error_message=text
        )
        await apply_error_policy(session, message, policy, code)
    return f"failed: {code}"


async def apply_error_policy(
    session: AsyncSession, message: Message, policy: errors.ErrorPolicy, code: int | None
) -> None:
    """What a failed message teaches us about the lead (opt-out, landline, invalid number),
    and what its play does about it.

    `code` is the error just recorded: the in-memory `message` may predate it.
    """
    if policy.action != errors.Action.OPT_OUT:
        await on_message_failed(session, message)
    else:
        await lock_contact(session, message.account_id, message.lead_phone)
        if not await optouts.is_opted_out(session, message.account_id, message.lead_phone):
            await optouts.record(
                session,
                account_id=message.account_id,
                phone=message.lead_phone,
                event=LedgerEvent.OPT_OUT,
                channel=Channel.SMS,
                source=LedgerSource.CARRIER_21610
                if code in (None, 21610)
                else LedgerSource.CARRIER,
                message_sid=message.twilio_sid,
                inbound_number=message.from_number,
                note=policy.note,
            )
            await on_opt_out(session, message.account_id, message.lead_phone)
    if policy.phone_status is not None and message.lead_id is not None:
        await session.exec(
            update(Lead)
            .where(col(Lead.id) == message.lead_id)
            .values(
                phone_status=policy.phone_status,
                phone_status_code=code,
                updated_at=now(),
            )
        )
    if policy.action == errors.Action.FILTERED:
        log.error(
            "carrier filtering (30007) account=%s message=%s: review content and registration",
            message.account_id,
            message.id,
        )
    elif policy.action == errors.Action.ACCOUNT:
        log.error(
            "Twilio account set-up account=%s message=%s code=%s: %s",
            message.account_id,
            message.id,
            code,
            policy.note,
        )


async def _requeue(session: AsyncSession, message_id: str, why: str, code: int | None) -> None:
    await session.exec(
        update(Message)
        .where(col(Message.id) == message_id, col(Message.status) == MessageStatus.SENDING)
        .values(status=MessageStatus.QUEUED, updated_at=now())
    )
    session.add(MessageEvent(message_id=message_id, status="retry", error_code=code, detail=why))


async def _reconcile(sc: SendContext, message: Message) -> str:
    """A row left `sending`: find out whether Twilio has it before trying again."""
    started = message.attempt_started_at or message.updated_at
    if now() - started < IN_FLIGHT_GRACE:
        raise Retry(defer=(IN_FLIGHT_GRACE - (now() - started)).total_seconds() + 1)
    listed = await sc.twilio.messages.list_async(
        to=message.lead_phone, from_=message.from_number, limit=50
    )
    async with sc.sessions() as session:
        known = set(
            (
                await session.exec(
                    select(Message.twilio_sid).where(
                        col(Message.twilio_sid).in_([m.sid for m in listed])
                    )
                )
            ).all()
        )
    since = started - RECONCILE_WINDOW
    for found in listed:
        created = found.date_created
        if found.sid in known or found.body != message.body:
            continue
        if created is not None and created < since:
            continue
        async with transaction(sc.sessions) as session:
            await advance(
                session,
                message.id,
                MessageStatus.ACCEPTED,
                twilio_sid=found.sid,
                detail="reconciled after an interrupted send",
            )
            await _confirm_ledger(session, message, found.sid)
            await on_message_accepted(session, message)
        return "reconciled"
    async with transaction(sc.sessions) as session:
        await _requeue(session, message.id, "interrupted send not found at Twilio", None)
    return "requeued"


async def _confirm_ledger(session: AsyncSession, message: Message, sid: str) -> None:
    if message.ledger_event_id is None:
        return
    event = await session.get(OptOutEvent, message.ledger_event_id)
    if event is not None:
        await optouts.record_confirmation(session, event, body=message.body, message_sid=sid)


async def _finish(session: AsyncSession, message: Message, status: MessageStatus, why: str) -> None:
    message.status, message.updated_at = status, now()
    message.error_message = why[:500]
    session.add(message)
    session.add(MessageEvent(message_id=message.id, status=status, detail=why[:500]))


async def _earlier_pending(
    session: AsyncSession, message: Message, moment: datetime
) -> datetime | None:
    """When the earliest text still queued for this lead before `message` may go (`moment` if
    it is due now), or None when nothing is ahead of it."""
    query = select(Message.send_after).where(
        Message.account_id == message.account_id,
        Message.lead_phone == message.lead_phone,
        Message.direction == Direction.OUTBOUND,
        col(Message.status).in_([MessageStatus.QUEUED, MessageStatus.SENDING]),
        col(Message.created_at) < message.created_at,
        col(Message.id) != message.id,
    )
    # A deferred confirmation never waits behind marketing; anything else keeps its order.
    if message.purpose == Purpose.CONFIRMATION:
        query = query.where(Message.purpose == Purpose.CONFIRMATION)
    ahead = (await session.exec(query)).all()
    if not ahead:
        return None
    return min(moment if at is None or at <= moment else at for at in ahead)


async def _last_inbound(session: AsyncSession, message: Message) -> datetime | None:
    query = (
        select(Message.created_at)
        .where(
            Message.account_id == message.account_id,
            Message.lead_phone == message.lead_phone,
            Message.direction == Direction.INBOUND,
        )
        .order_by(col(Message.created_at).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def _choose_sender(session: AsyncSession, message: Message) -> SenderNumber | None:
    """The number the lead last talked with, if the account still has it; else a stable pick."""
    numbers = list(
        (
            await session.exec(
                select(SenderNumber)
                .where(SenderNumber.account_id == message.account_id)
                .order_by(col(SenderNumber.id))
            )
        ).all()
    )
    if not numbers:
        return None
    # A number Twilio refused lately is passed over while another works (sender_status.py).
    numbers = [n for n in numbers if n.status == SenderStatus.OK] or numbers
    by_number = {n.number: n for n in numbers}
    last = (
        await session.exec(
            select(Message.direction, Message.from_number, Message.to_number)
            .where(
                Message.account_id == message.account_id,
                Message.lead_phone == message.lead_phone,
                col(Message.id) != message.id,
                col(Message.from_number).is_not(None),
            )
            .order_by(col(Message.created_at).desc())
            .limit(1)
        )
    ).first()
    if last is not None:
        direction, from_number, to_number = last
        ours = to_number if direction == Direction.INBOUND else from_number
        if ours in by_number:
            return by_number[ours]
    return numbers[zlib.crc32(message.lead_phone.encode()) % len(numbers)]
