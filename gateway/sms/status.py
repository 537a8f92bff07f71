"""Message statuses only move forward: a late `sent` never overwrites `delivered`, and nothing
moves a message out of a final status (a late `undelivered` or `failed` after `delivered`, a
`canceled` after anything sent). The one step after a final status is `delivered` -> `read`,
Twilio's own order for channels that report reads (queued -> sent -> delivered -> read)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

from sqlalchemy import bindparam, case, func, update
from sqlalchemy.orm.util import identity_key
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import commit_rows
from gateway.clock import now
from gateway.db import among, numbered, rows_of
from gateway.models import Message, MessageEvent, MessageStatus
from gateway.sms.status_schedule import first_check

# What the sms channel reports about one of our texts, for its play and lead to hear
# (gateway.engine.lifecycle.on_text): Twilio took it, it failed for good, or the carrier says
# the lead opted out (recorded in the ledger just now).
TextOutcome = Literal["accepted", "failed", "opted_out"]

RANK: dict[MessageStatus, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.ACCEPTED: 2,
    MessageStatus.SENT: 3,
    MessageStatus.DELIVERED: 4,
    MessageStatus.UNDELIVERED: 4,
    MessageStatus.FAILED: 4,
    MessageStatus.READ: 5,
    MessageStatus.BLOCKED: 9,
    MessageStatus.CANCELED: 9,
    MessageStatus.RECEIVED: 9,
}
FINAL = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
        MessageStatus.READ,
        MessageStatus.BLOCKED,
        MessageStatus.CANCELED,
    }
)
# Twilio's statuses, as they arrive in callbacks and REST answers, mapped onto ours.
FROM_TWILIO: dict[str, MessageStatus] = {
    "accepted": MessageStatus.ACCEPTED,
    "scheduled": MessageStatus.ACCEPTED,
    "queued": MessageStatus.ACCEPTED,
    "sending": MessageStatus.ACCEPTED,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.CANCELED,
}


def lower_statuses(status: MessageStatus) -> list[str]:
    """The statuses a message may move to `status` from: lower in rank and not final."""
    return [
        str(s)
        for s, rank in RANK.items()
        if rank < RANK[status]
        and (s not in FINAL or (s == MessageStatus.DELIVERED and status == MessageStatus.READ))
    ]


@cache
def _move(
    status: MessageStatus | None,
    columns: frozenset[str],
    *,
    returning: bool = False,
    sync: bool = True,
) -> Any:
    """The UPDATE that moves a message to `status` (None: whatever its status) and writes
    `columns` from parameters of the same names, built once per shape: `twilio_sid` is only
    written where the row has none. `returning`: the moved row comes back (RETURNING) and
    refreshes the session's object. `sync`: the ORM applies the UPDATE to the session's object
    (evaluating it in Python on every run); otherwise it is a Core UPDATE of the table, which
    skips the ORM's machinery altogether."""
    if sync and not returning:
        table: Any = Message
        id_, status_, sid = col(Message.id), col(Message.status), col(Message.twilio_sid)
    else:
        table = Message.__table__  # type: ignore[attr-defined]
        id_, status_, sid = table.c.id, table.c.status, table.c.twilio_sid
    values: dict[str, Any] = {name: bindparam(name) for name in columns}
    if "twilio_sid" in columns:
        values["twilio_sid"] = func.coalesce(sid, bindparam("twilio_sid"))
    statement = update(table).where(id_ == bindparam("message_id"))
    if status is not None:
        lower = lower_statuses(status)
        # The ORM evaluates a synced UPDATE's condition in Python, which literals defeat.
        statement = statement.where(status_.in_(lower) if sync else among(status_, lower))
    statement = statement.values(**values)
    return rows_of(Message, statement) if returning else statement


async def advance(
    session: AsyncSession,
    message_id: str,
    status: MessageStatus,
    *,
    error_code: int | None = None,
    error_message: str | None = None,
    twilio_sid: str | None = None,
    num_segments: int | None = None,
    detail: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Move a message to `status` if that is forward (compare-and-set); True when it moved.

    The history row is written either way, so a late or duplicate callback still shows up; a
    message that did not move keeps its error code, and the caller must not act on the status.
    `twilio_sid` (if the row has none yet) and `num_segments` (Twilio's count) are written
    whether or not the status moves: in the move's own UPDATE when it moves, which is one
    statement on a send's common path, else in a second one. `at`: when Twilio reported the
    status, if not now (a callback acted on by a job after its request).
    """
    values = _moved_values(
        status, error_code, error_message, twilio_sid=twilio_sid, num_segments=num_segments, at=at
    )
    # A send records its outcome in a transaction of its own, which holds no Message to sync.
    sync = identity_key(Message, message_id) in session.sync_session.identity_map
    result = await session.exec(
        _move(status, frozenset(values), sync=sync), params={"message_id": message_id, **values}
    )
    moved = bool(result.rowcount == 1)
    if not moved and (twilio_sid is not None or num_segments is not None):
        # A callback raced the commit of the create and moved the status first.
        facts = {k: v for k, v in values.items() if k in ("twilio_sid", "num_segments")}
        await session.exec(
            _move(None, frozenset(facts), sync=sync), params={"message_id": message_id, **facts}
        )
    note_event(
        session,
        message_id,
        status if moved else f"{status} (late)",
        error_code=error_code,
        detail=detail,
        at=at,
    )
    return moved


@dataclass(frozen=True)
class Accepted:
    """Twilio took a claimed text: its SID, its count of segments, and what it said."""

    message_id: str
    twilio_sid: str
    num_segments: int | None
    detail: str


async def advance_accepted(session: AsyncSession, accepted: Sequence[Accepted]) -> None:
    """`advance` to `accepted` for texts Twilio took, all in one UPDATE ... RETURNING (a
    drain's batch records its texts in one statement, not one each). A text a status callback
    moved on first gets its SID and count alone, and its history says `accepted (late)`."""
    if not accepted:
        return  # no statement: an UPDATE ... WHERE id IN () would not compile
    moment = now()
    params: dict[str, Any] = {
        "status": MessageStatus.ACCEPTED,
        "updated_at": moment,
        "status_check_at": first_check(moment),
    }
    for n, one in enumerate(accepted):
        params.update({f"id_{n}": one.message_id, f"sid_{n}": one.twilio_sid})
        params[f"segments_{n}"] = one.num_segments
    moved = set((await session.execute(_accepted(len(accepted)), params)).scalars())
    for one in accepted:
        if one.message_id not in moved:
            facts: dict[str, Any] = {"twilio_sid": one.twilio_sid}
            if one.num_segments is not None:
                facts["num_segments"] = one.num_segments
            statement = _move(None, frozenset(facts), sync=False)
            await session.exec(statement, params={"message_id": one.message_id, **facts})
        status = MessageStatus.ACCEPTED
        note_event(
            session,
            one.message_id,
            status if one.message_id in moved else f"{status} (late)",
            detail=one.detail,
            at=moment,
        )


@cache
def _accepted(count: int) -> Any:
    """`advance_accepted`'s UPDATE for `count` texts, built once per count: each row's SID and
    count by a CASE on its id (the SID only where the row has none, the count only if given),
    the moved ids returned."""
    table = Message.__table__  # type: ignore[attr-defined]

    def each(name: str, column: Any) -> Any:
        return case(
            *(
                (table.c.id == bindparam(f"id_{n}"), bindparam(f"{name}_{n}", type_=column.type))
                for n in range(count)
            )
        )

    return (
        update(table)
        .where(
            table.c.id.in_(numbered("id", count)),
            among(table.c.status, lower_statuses(MessageStatus.ACCEPTED)),
        )
        .values(
            status=bindparam("status"),
            updated_at=bindparam("updated_at"),
            status_check_at=bindparam("status_check_at"),
            twilio_sid=func.coalesce(table.c.twilio_sid, each("sid", table.c.twilio_sid)),
            num_segments=func.coalesce(
                each("segments", table.c.num_segments), table.c.num_segments
            ),
        )
        .returning(table.c.id)
    )


async def moved(
    session: AsyncSession,
    message_id: str,
    status: MessageStatus,
    *,
    error_code: int | None = None,
    twilio_sid: str | None = None,
    at: datetime | None = None,
) -> bool:
    """`advance` for a report whose row nothing acts on (`sent`, `delivered`), with no object
    to sync: True when it moved, with its history row added; False when it did not, with
    nothing written (the caller reads the row and calls `advance`, which records it late)."""
    result = await _move_reported(
        session, message_id, status, error_code, twilio_sid, returning=False, at=at
    )
    if result.rowcount != 1:
        return False
    note_event(session, message_id, status, error_code=error_code, at=at)
    return True


async def moved_row(
    session: AsyncSession,
    message_id: str,
    status: MessageStatus,
    *,
    error_code: int | None = None,
    twilio_sid: str | None = None,
    at: datetime | None = None,
) -> Message | None:
    """`moved` for a report that acts on the row (a failure): the moved row, read back by the
    UPDATE itself (RETURNING), so the report costs no read; None when it did not move."""
    result = await _move_reported(
        session, message_id, status, error_code, twilio_sid, returning=True, at=at
    )
    row: Message | None = result.scalars().first()
    if row is not None:
        note_event(session, message_id, status, error_code=error_code, at=at)
    return row


async def _move_reported(
    session: AsyncSession,
    message_id: str,
    status: MessageStatus,
    error_code: int | None,
    twilio_sid: str | None,
    *,
    returning: bool,
    at: datetime | None,
) -> Any:
    values = _moved_values(
        status, error_code, None, twilio_sid=twilio_sid, num_segments=None, at=at
    )
    statement = _move(status, frozenset(values), returning=returning, sync=False)
    return await session.exec(statement, params={"message_id": message_id, **values})


def note_event(
    session: AsyncSession,
    message_id: str,
    status: str,
    *,
    error_code: int | None = None,
    detail: str | None = None,
    at: datetime | None = None,
) -> None:
    """A row of the message's history (dated `at`, or now), written with the transaction's
    other history rows in one INSERT when it commits (gateway/commit_rows.py): after the
    message's own row, and in the order they were noted."""
    row = {
        "message_id": message_id,
        "status": status,
        "at": at or now(),
        "error_code": error_code,
        "detail": detail,
    }
    commit_rows.add(session, _EVENTS, row, order="message_id")


_EVENTS = MessageEvent.__table__  # type: ignore[attr-defined]


def _moved_values(
    status: MessageStatus,
    error_code: int | None,
    error_message: str | None,
    *,
    twilio_sid: str | None,
    num_segments: int | None,
    at: datetime | None = None,
) -> dict[str, object]:
    """The columns a move to `status` writes, by name, as of `at` (default: now)."""
    moment = at or now()
    values: dict[str, object] = {
        "status": status,
        "updated_at": moment,
        # A sent text without a final status is asked for again if its callbacks don't come
        # (gateway/jobs/sms_status_checks.py); a final one never is.
        "status_check_at": None if status in FINAL else first_check(moment),
    }
    if error_code is not None:
        values["error_code"] = error_code
    if error_message is not None:
        values["error_message"] = error_message[:500]
    if status in (MessageStatus.SENT, MessageStatus.DELIVERED):
        values["sent_at"] = moment
    if twilio_sid is not None:
        values["twilio_sid"] = twilio_sid
    if num_segments is not None:
        values["num_segments"] = num_segments
    return values
