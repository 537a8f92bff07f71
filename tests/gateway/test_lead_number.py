"""Which of our numbers a lead knows: texts and calls give one answer (gateway/lead_number.py)."""

from __future__ import annotations

from gateway import accounts, gate
from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.ids import new_id
from gateway.lead_number import account_numbers
from gateway.models import Account, Direction, Message, MessageStatus, SenderNumber
from gateway.sms.sender import _choose_sender, _lead_texts
from voice.starting import caller_id

# Three numbers, ordered by id: the first is what a call used to fall back to.
NUMBERS = ("+14155550100", "+14155550101", "+14155550102")
LEAD = "+14155550124"  # its stable pick among three numbers is the third (crc32 % 3 == 2)


async def _numbers(sessions: SessionFactory, account_id: str) -> None:
    async with transaction(sessions) as session:
        for i, number in enumerate(NUMBERS):
            session.add(
                SenderNumber(id=f"num_{i}_{new_id('n')}", account_id=account_id, number=number)
            )


def _text(
    account_id: str, direction: Direction, ours: str | None, status: MessageStatus
) -> Message:
    outbound = direction == Direction.OUTBOUND
    return Message(
        id=new_id("msg"),
        account_id=account_id,
        lead_phone=LEAD,
        direction=direction,
        from_number=ours if outbound else LEAD,
        to_number=LEAD if outbound else ours,
        body="hello",
        status=status,
    )


async def _next_text_from(sessions: SessionFactory, account_id: str) -> str | None:
    """The number the sender picks for a new text to the lead."""
    async with transaction(sessions) as session:
        queued = _text(account_id, Direction.OUTBOUND, None, MessageStatus.QUEUED)
        session.add(queued)
        await session.flush()
        # As `sender.prepare` asks: the number the lead knows and the account's numbers, beside
        # the gate's facts.
        account = await session.get(Account, account_id)
        assert account is not None
        gathered = await gate.gather(
            session,
            account,
            LEAD,
            channel="sms",
            purpose="initiated",
            also=_lead_texts(queued, now(), with_numbers=True),
        )
        known = gathered.also[-1]
        assert list(gathered.rows) == list(await account_numbers(session, account_id))
        sender = _choose_sender(gathered.rows, known, queued)
        await session.delete(queued)
    return sender.number if sender is not None else None


async def _call_from(sessions: SessionFactory, account_id: str) -> str | None:
    async with sessions() as session:
        return await caller_id(session, account_id, LEAD)


async def test_a_lead_texted_is_called_from_the_number_that_texted_it(
    issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    account_id = issued_key.key.account_id
    await _numbers(sessions, account_id)
    # Neither the first number nor the lead's stable pick: only stickiness explains the answer.
    async with transaction(sessions) as session:
        session.add(_text(account_id, Direction.OUTBOUND, NUMBERS[1], MessageStatus.DELIVERED))
    assert await _next_text_from(sessions, account_id) == NUMBERS[1]
    assert await _call_from(sessions, account_id) == NUMBERS[1]


async def test_a_lead_that_texted_us_is_called_from_the_number_it_texted(
    issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    account_id = issued_key.key.account_id
    await _numbers(sessions, account_id)
    async with transaction(sessions) as session:
        session.add(_text(account_id, Direction.INBOUND, NUMBERS[0], MessageStatus.RECEIVED))
    assert await _call_from(sessions, account_id) == NUMBERS[0]
    assert await _next_text_from(sessions, account_id) == NUMBERS[0]


async def test_a_lead_called_first_is_texted_from_the_number_that_called_it(
    issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    """No text yet: the call and the first text both take the lead's stable pick (the call
    used to take the first number while the text took the pick: two numbers for one lead)."""
    account_id = issued_key.key.account_id
    await _numbers(sessions, account_id)
    called_from = await _call_from(sessions, account_id)
    assert called_from == NUMBERS[2]
    assert await _next_text_from(sessions, account_id) == called_from
