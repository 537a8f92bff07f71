"""Queuing outbound texts: the row (the database is the source of truth) and, staged in the same
transaction, its `sms.send` job (handed to Redis once the transaction commits)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import inspect
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import stamp
from gateway.db import for_this_transaction
from gateway.ids import new_id
from gateway.models import Direction, Message, MessageStatus, Purpose
from gateway.rows import fresh, insert_row
from gateway.sms import segments
from gateway.sms.status import note_event
from gateway.work import SMS_SEND, stage
from gateway.work.inline import runs_here


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
    if session.new:
        await session.flush()  # the play or lead it names, when this transaction made them
    if send_after is None and _holding(session):
        # Held for its claim, which writes it `sending` in one INSERT, not an INSERT and the
        # claim's UPDATE (`write_held`). Meanwhile it is a pending object of the session: a
        # statement before the claim (a step asking about the play's texts) has it written
        # first by the unit of work, as any flush would, so nothing reads past it.
        session.add(message)
    else:
        # Written now by Core statements built once, not by the unit of work at the next
        # flush: about a fifth of its CPU per row (gateway.rows.insert_row). Changes to rows
        # already written (a play moved on to this step) wait for the next flush, so that a
        # batch of plays' moves go out together, not one UPDATE before each text.
        with session.no_autoflush:
            await insert_row(session, message)
    note_event(session, message.id, MessageStatus.QUEUED, detail=reason)
    stage(session, SMS_SEND, message.id, at=send_after, batch=account_id)
    # Held for `queued_here` (the session's identity map holds an unchanged row only weakly).
    _queued(session)[message.id] = message
    return message


# session.info keys (`for_this_transaction`): the texts this transaction queued, by id; and
# whether it holds those due now unwritten for their claim (`hold_for_claim`).
_QUEUED = "gateway.sms.outbox.queued"
_HOLDING = "gateway.sms.outbox.holding"


@dataclass
class _Holding:
    on: bool = False


def hold_for_claim(session: AsyncSession) -> None:
    """This transaction gates and claims the texts it queues to send now itself, before it
    commits (`gateway.jobs.sms_send.claim_staged`, which a lead's first text takes): hold each
    unwritten until then, so that its claim writes it once, already `sending`, where a text
    written `queued` and then claimed costs an INSERT and an UPDATE. The first text of a lead
    is a statement cheaper this way (bench/RESULTS.md §38)."""
    for_this_transaction(session, _HOLDING, _Holding).on = True


def _holding(session: AsyncSession) -> bool:
    # Only while this process has room to send it after the commit: otherwise the claim is
    # its job's, and a text held for nothing would be written by the unit of work.
    return for_this_transaction(session, _HOLDING, _Holding).on and runs_here(session) is not None


async def write_held(session: AsyncSession, message: Message) -> None:
    """Write `message`, a held text taken out of the session for its gate (`take_held`), as it
    now stands, in one INSERT, unless it is written already (its claim writes it; a statement
    after a block or a deferral gave it back to the session may have had the session write it).
    """
    if message in session.new:
        session.expunge(message)  # given back by a block or a deferral: written here, by Core
    if inspect(message).transient:
        await insert_row(session, message)


def take_held(session: AsyncSession, message: Message) -> bool:
    """Take a held text out of the session before its gate asks anything, so that no flush
    writes it `queued` meanwhile: its claim, or `write_held`, writes it. Whether it was held."""
    if message not in session.new:
        return False  # written already: not held, or a statement before its gate flushed it
    session.expunge(message)
    return True


def _queued(session: AsyncSession) -> dict[str, Message]:
    return for_this_transaction(session, _QUEUED, dict)


def queued_here(session: AsyncSession, message_id: str) -> Message | None:
    """The text `queue_message` queued in this session's transaction under `message_id`, as it
    holds it (no read); None for any other."""
    return _queued(session).get(message_id)
