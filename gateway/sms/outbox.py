"""Queuing outbound texts: the row (the database is the source of truth) and, staged in the same
transaction, its `sms.send` job (handed to Redis once the transaction commits)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import stamp
from gateway.db import for_this_transaction
from gateway.ids import new_id
from gateway.models import Direction, Message, MessageStatus, Purpose
from gateway.rows import fresh, insert_row
from gateway.sms import segments
from gateway.sms.status import note_event
from gateway.work import SMS_SEND, stage


async def queue_message(
    session: AsyncSession,
    *,
    account_id: str,
    phone: str,
    body: str,
    purpose: Purpose,
    reason: str,
    lead_id: str | None = None,
    play_id: str | None = None,
    step_id: str | None = None,
    sent_by: str | None = None,
    send_after: datetime | None = None,
    ledger_event_id: int | None = None,
    retry_of: str | None = None,
) -> Message:
    """A new outbound message in state `queued`, its send staged for `send_after` (or now)."""
    message = fresh(
        Message,
        id=new_id("msg"),
        account_id=account_id,
        lead_id=lead_id,
        play_id=play_id,
        step_id=step_id,
        sent_by=sent_by,
        lead_phone=phone,
        direction=Direction.OUTBOUND,
        to_number=phone,
        body=body,
        purpose=purpose,
        reason=reason,
        status=MessageStatus.QUEUED,
        num_segments=segments.count(body).count,
        send_after=send_after,
        ledger_event_id=ledger_event_id,
        retry_of=retry_of,
        created_at=stamp(),
    )
    # Written now by Core statements built once, not by the unit of work at the next flush:
    # about a fifth of its CPU per row (gateway.rows.insert_row).
    if session.new:
        await session.flush()  # the play or lead it names, when this transaction made them
    # Changes to rows already written (a play moved on to this step) wait for the next flush,
    # so that a batch of plays' moves go out together, not one UPDATE before each text.
    with session.no_autoflush:
        await insert_row(session, message)
    note_event(session, message.id, MessageStatus.QUEUED, detail=reason)
    stage(session, SMS_SEND, message.id, at=send_after, batch=account_id)
    # Held for `queued_here` (the session's identity map holds an unchanged row only weakly).
    _queued(session)[message.id] = message
    return message


# session.info key (`for_this_transaction`): the texts this transaction queued, by id.
_QUEUED = "gateway.sms.outbox.queued"


def _queued(session: AsyncSession) -> dict[str, Message]:
    return for_this_transaction(session, _QUEUED, dict)


def queued_here(session: AsyncSession, message_id: str) -> Message | None:
    """The text `queue_message` queued in this session's transaction under `message_id`, as it
    holds it (no read); None for any other."""
    return _queued(session).get(message_id)
