"""The contact lock (gateway/contact_lock.py) touches a contact's row once per transaction:
a second call for the same contact in the same transaction sends nothing, a new transaction
touches it again. Real database; on SQLite a `transaction()` holds the write lock and touches
nothing at all."""

from __future__ import annotations

from gateway.contact_lock import lock_contact
from gateway.db import SessionFactory, transaction
from tests.conftest import TEST_DATABASE_URL
from tests.support.sql import statements

ACCOUNT = "acct_lock"
ANN, BOB = "+14155550101", "+14155550102"


async def test_a_contact_is_touched_once_per_transaction(sessions: SessionFactory) -> None:
    with statements("contact_locks") as seen:
        async with transaction(sessions) as session:
            for _ in range(3):
                await lock_contact(session, ACCOUNT, ANN)
            await lock_contact(session, ACCOUNT, BOB)
        async with transaction(sessions) as session:
            await lock_contact(session, ACCOUNT, ANN)
    assert len(seen) == (0 if TEST_DATABASE_URL is None else 3)


async def test_a_session_touches_again_in_its_next_transaction(sessions: SessionFactory) -> None:
    """A plain session's transactions (no write lock taken at BEGIN, on either backend)."""
    with statements("contact_locks") as seen:
        async with sessions() as session:
            async with session.begin():
                await lock_contact(session, ACCOUNT, ANN)
                await lock_contact(session, ACCOUNT, ANN)
            async with session.begin():
                await lock_contact(session, ACCOUNT, ANN)
    assert len(seen) == 2
