"""A sender number Twilio refuses as `From` (errors.Action.SENDER: 21606, 21661, 30032, 30034)
is the account's set-up problem, never the lead's.

What happens:
- the number is flagged `unavailable` (with the code and when), the account is told (a WARNING
  log line with ids and a `sender_unavailable` entry in the play's log), the lead is untouched;
- the text is held (`queued`, gate_reason `sender_unavailable`) and tried again after
  errors.SENDER_RETRY_DELAYS, a few tries over about 17 hours; after the last it fails;
- a new text whose only usable sender is flagged waits until the number is next due for a try
  instead of asking Twilio again, so a broken number costs one request per text per try;
- the first text that goes through from a flagged number clears the flag and releases every
  text held for it at once. Fixing the number at Twilio is therefore noticed on the next try;
  re-registering it (DELETE and POST /v1/numbers) gives a fresh row that is `ok` at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import play_log_rows
from gateway.clock import now
from gateway.models import (
    Message,
    MessageEvent,
    MessageStatus,
    Play,
    SenderNumber,
    SenderStatus,
)
from gateway.sms import errors
from gateway.sms.status import note_event

log = logging.getLogger(__name__)

# gate_reason of a text held for its sender, and the history status of each hold (counted to
# bound the tries).
SENDER_UNAVAILABLE = "sender_unavailable"


def next_try(sender: SenderNumber) -> datetime | None:
    """When texts may ask Twilio to send from `sender` again; None when it is usable."""
    if sender.status == SenderStatus.OK:
        return None
    flagged = sender.status_changed_at or now()
    return flagged + timedelta(seconds=errors.SENDER_RETRY_DELAYS[0])


def wait_until(sender: SenderNumber, message: Message, moment: datetime) -> datetime | None:
    """When `message` must wait for its flagged sender's next try; None when it may go now (the
    number is fine, its next try has come, or this text's own held time has)."""
    at = next_try(sender)
    if at is None or at <= moment or message.gate_reason == SENDER_UNAVAILABLE:
        return None
    return at


async def refused(
    session: AsyncSession,
    message: Message,
    code: int | None,
    note: str,
    retry_at: datetime | None,
) -> None:
    """Flag the message's sender number and tell the account; the lead is left alone."""
    moment = now()
    if message.from_number is not None:
        await session.exec(
            update(SenderNumber)
            .where(
                col(SenderNumber.account_id) == message.account_id,
                col(SenderNumber.number) == message.from_number,
            )
            .values(status=SenderStatus.UNAVAILABLE, status_code=code, status_changed_at=moment)
        )
    log.warning(
        "sender number unavailable account=%s number=%s code=%s message=%s play=%s: %s; "
        "the text is held until %s",
        message.account_id,
        message.from_number,
        code,
        message.id,
        message.play_id,
        note,
        retry_at.isoformat() if retry_at else "never (tries used up)",
    )
    play = await session.get(Play, message.play_id) if message.play_id else None
    if play is not None:
        # A line in the play's log, not a change to the play: the engine alone moves plays,
        # and a sender number's trouble is the account's, not the lead's (module docstring).
        detail = {
            "number": message.from_number,
            "code": code,
            "note": note,
            "message_id": message.id,
            "retry_at": retry_at.isoformat() if retry_at else None,
        }
        play_log_rows.add(session, play.id, SENDER_UNAVAILABLE, message.step_id, detail)


async def hold(
    session: AsyncSession, message: Message, code: int | None, text: str, note: str
) -> datetime | None:
    """Twilio refused the sender of a text being sent: flag it, and put the text back in the
    queue for its next try. Returns when that is, or None when its tries are used up."""
    held = (
        await session.exec(
            select(func.count())
            .select_from(MessageEvent)
            .where(
                col(MessageEvent.message_id) == message.id,
                col(MessageEvent.status) == SENDER_UNAVAILABLE,
            )
        )
    ).one()
    delay = errors.retry_delay(errors.SENDER_RETRY_DELAYS, held + 1)
    retry_at = now() + timedelta(seconds=delay) if delay is not None else None
    await refused(session, message, code, note, retry_at)
    if retry_at is None:
        return None
    await session.exec(
        update(Message)
        .where(col(Message.id) == message.id, col(Message.status) == MessageStatus.SENDING)
        .values(
            status=MessageStatus.QUEUED,
            send_after=retry_at,
            gate_reason=SENDER_UNAVAILABLE,
            updated_at=now(),
        )
    )
    note_event(
        session,
        message.id,
        SENDER_UNAVAILABLE,
        error_code=code,
        detail=f"{message.from_number}: {text}"[:500],
    )
    return retry_at


async def recovered(session: AsyncSession, message: Message) -> list[str]:
    """A text held for its sender went through: the number works again. Clear its flag and
    release the account's texts held for it; returns their ids (to enqueue after commit)."""
    moment = now()
    await session.exec(
        update(SenderNumber)
        .where(
            col(SenderNumber.account_id) == message.account_id,
            col(SenderNumber.number) == message.from_number,
            col(SenderNumber.status) != SenderStatus.OK,
        )
        .values(status=SenderStatus.OK, status_code=None, status_changed_at=moment)
    )
    await session.exec(
        update(Message).where(col(Message.id) == message.id).values(gate_reason=None)
    )
    # Texts held after a try on this number, and new texts that waited for it (no sender yet).
    released = await session.exec(
        update(Message)
        .where(
            col(Message.account_id) == message.account_id,
            col(Message.status) == MessageStatus.QUEUED,
            col(Message.gate_reason) == SENDER_UNAVAILABLE,
            col(Message.send_after) > moment,
            or_(
                col(Message.from_number) == message.from_number, col(Message.from_number).is_(None)
            ),
        )
        .values(send_after=moment, updated_at=moment)
        .returning(col(Message.id))
    )
    ids = list(released.scalars().all())
    log.info(
        "sender number works again account=%s number=%s message=%s: %d held texts released",
        message.account_id,
        message.from_number,
        message.id,
        len(ids),
    )
    return ids
