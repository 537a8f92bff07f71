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
from functools import cache

from sqlalchemy import BindParameter, bindparam, case
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

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
    text being sent, which is not yet part of the conversation. One statement.
    """
    params = {"account_id": account_id, "phone": phone}
    if excluding_message is not None:
        params["excluding"] = excluding_message
    rows = (await session.exec(_numbers_query(excluding_message is not None), params=params)).all()
    if not rows:
        return None
    ours = rows[0][1]
    numbers = [n for n, _ in rows if usable(n)] or [n for n, _ in rows]
    for number in numbers:
        if number.number == ours:
            return number
    return numbers[zlib.crc32(phone.encode()) % len(numbers)]


@cache
def _numbers_query(excluding: bool) -> Select[SenderNumber, str | None]:
    """`number_lead_knows`' statement, built once: the account's numbers, each row carrying
    the number the lead last dealt with (ours on the conversation's latest message)."""
    account_id: BindParameter[str] = bindparam("account_id")
    thread = select(
        case(
            (col(Message.direction) == Direction.INBOUND, col(Message.to_number)),
            else_=col(Message.from_number),
        )
    ).where(
        Message.account_id == account_id,
        Message.lead_phone == bindparam("phone"),
        col(Message.from_number).is_not(None),
    )
    if excluding:
        thread = thread.where(col(Message.id) != bindparam("excluding"))
    known = thread.order_by(col(Message.created_at).desc()).limit(1).scalar_subquery()
    return (
        select(SenderNumber, known)
        .where(SenderNumber.account_id == account_id)
        .order_by(col(SenderNumber.id))
    )
