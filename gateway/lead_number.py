"""Which of the account's numbers a lead knows: the one answer for texts and calls alike.

A lead sees one number for the business: the number it last talked with (the number it texted,
or the number that texted it), while the account still has it. A lead with no such number gets
a stable pick by its phone, the same number every time for the same set of numbers, so a lead
called before it was ever texted is later texted from the number that called it, and the
account's leads spread over its numbers (each sender has its own rate).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.models import Direction, Message, SenderNumber


def _any(number: SenderNumber) -> bool:
    return True


async def number_lead_knows(
    session: AsyncSession,
    account_id: str,
    phone: str,
    *,
    usable: Callable[[SenderNumber], bool] = _any,
    excluding_message: str | None = None,
) -> SenderNumber | None:
    """The account's number the lead at `phone` knows (None: the account has no number).

    `usable`: numbers the caller may use now (a text passes over a number Twilio refused
    lately while another works); when none is, every number is. `excluding_message`: the
    text being sent, which is not yet part of the conversation. Two statements.
    """
    numbers = list(
        (
            await session.exec(
                select(SenderNumber)
                .where(SenderNumber.account_id == account_id)
                .order_by(col(SenderNumber.id))
            )
        ).all()
    )
    if not numbers:
        return None
    numbers = [n for n in numbers if usable(n)] or numbers
    by_number = {n.number: n for n in numbers}
    query = select(Message.direction, Message.from_number, Message.to_number).where(
        Message.account_id == account_id,
        Message.lead_phone == phone,
        col(Message.from_number).is_not(None),
    )
    if excluding_message is not None:
        query = query.where(col(Message.id) != excluding_message)
    last = (await session.exec(query.order_by(col(Message.created_at).desc()).limit(1))).first()
    if last is not None:
        direction, from_number, to_number = last
        ours = to_number if direction == Direction.INBOUND else from_number
        if ours in by_number:
            return by_number[ours]
    return numbers[zlib.crc32(phone.encode()) % len(numbers)]
