"""Which of the account's numbers a lead knows: the one answer for texts and calls alike.

A lead sees one number for the business: the number it last talked with (the number it texted,
or the number that texted it), while the account still has it. A lead with no such number gets
a stable pick by its phone, the same number every time for the same set of numbers, so a lead
called before it was ever texted is later texted from the number that called it, and the
account's leads spread over its numbers (each sender has its own rate).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from functools import cache

from sqlalchemy import ScalarSelect, bindparam, case
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
    known = rows[0][1] if rows else None
    return pick([n for n, _ in rows], known, phone, usable=usable)


def pick(
    numbers: Sequence[SenderNumber],
    known: str | None,
    phone: str,
    *,
    usable: Callable[[SenderNumber], bool] = _any,
) -> SenderNumber | None:
    """`number_lead_knows` from what it reads: the account's numbers (`account_numbers`) and
    the number the lead last dealt with (`known_number`), for a caller that asks those in
    statements of its own (a batch of texts reads the numbers once)."""
    if not numbers:
        return None
    candidates = [n for n in numbers if usable(n)] or list(numbers)
    for number in candidates:
        if number.number == known:
            return number
    return candidates[zlib.crc32(phone.encode()) % len(candidates)]


async def account_numbers(session: AsyncSession, account_id: str) -> Sequence[SenderNumber]:
    """The account's numbers, in `pick`'s order."""
    return (await session.exec(_ACCOUNT_NUMBERS, params={"account_id": account_id})).all()


# The account's numbers in `pick`'s order: (the model, its order), as `gateway.gate.Also`
# takes them to read them beside a text's gate facts.
NUMBERS_ORDER = (SenderNumber, col(SenderNumber.id))
_ACCOUNT_NUMBERS = (
    select(SenderNumber)
    .where(SenderNumber.account_id == bindparam("account_id"))
    .order_by(NUMBERS_ORDER[1])
)


@cache
def known_number(excluding: bool) -> ScalarSelect[str | None]:
    """The number the lead at `phone` last dealt with (ours on the conversation's latest
    message), as a scalar subquery with parameters `account_id`, `phone` and, `excluding`, the
    text being sent; built once."""
    thread = select(
        case(
            (col(Message.direction) == Direction.INBOUND, col(Message.to_number)),
            else_=col(Message.from_number),
        )
    ).where(
        Message.account_id == bindparam("account_id"),
        Message.lead_phone == bindparam("phone"),
        col(Message.from_number).is_not(None),
    )
    if excluding:
        thread = thread.where(col(Message.id) != bindparam("excluding"))
    return thread.order_by(col(Message.created_at).desc()).limit(1).scalar_subquery()


@cache
def _numbers_query(excluding: bool) -> Select[SenderNumber, str | None]:
    """`number_lead_knows`' statement, built once: the account's numbers, each row carrying
    the number the lead last dealt with."""
    return (
        select(SenderNumber, known_number(excluding))
        .where(SenderNumber.account_id == bindparam("account_id"))
        .order_by(col(SenderNumber.id))
    )
