"""Preparing a text for the `sms.send` job (gateway/jobs/sms_send.py): gate it, pick the
sender, respect its rate, and claim it (queued -> sending, by compare-and-set) for the one
request to Twilio; and the records the job writes around that request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from arq import Retry
from sqlalchemy import and_, bindparam, case, func, inspect, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance import gate as rules
from compliance.gate import GateDecision
from compliance.gate import Purpose as GatePurpose
from compliance.notice import NOTICE_INTERVAL
from gateway import gate, optouts
from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.db import UTCDateTime, all_rows, among, numbered
from gateway.job_context import JobContext
from gateway.lead_number import NUMBERS_ORDER, known_number, pick
from gateway.leads import lead_of_message
from gateway.models import (
    Account,
    Direction,
    Lead,
    Message,
    MessageStatus,
    OptOutEvent,
    PhoneStatus,
    Purpose,
    SenderNumber,
    SenderStatus,
)
from gateway.rows import insert_row
from gateway.sms import notice as sms_notice
from gateway.sms import sender_status
from gateway.sms.ratelimit import rate_for
from gateway.sms.status import note_event
from gateway.work import SMS_SEND, stage

log = logging.getLogger(__name__)

# A row left in `sending` younger than this may still have its request in flight (Twilio
# client timeout plus margin); older ones are reconciled.
IN_FLIGHT_GRACE = timedelta(seconds=30)
RECONCILE_WINDOW = timedelta(minutes=2)
RATE_SLOT = "rate_slot"  # gate_reason of a message waiting for its reserved sender slot
BEHIND_EARLIER = "behind_earlier_text"  # gate_reason: waits for the lead's earlier text
# gate_reason of a text Twilio asked us to try again later (a 429, a 5xx): its own job waits
# for the back-off in Redis, under the text's job id, and no account's drain takes it sooner.
# The wait is arq's, by the wall clock, as a rate slot's is: the row keeps no `send_after`,
# which a test's clock (or a clock run ahead) would not reach when arq runs the job.
BACKOFF = "twilio_retry"
# A text whose lead has an earlier one due or being sent comes back after this long (a lead's
# queued texts leave a few a second, in order).
EARLIER_TEXT_POLL_SECONDS = 0.25
# What `prepare` says of a row found `sending` (an earlier run's request may have reached
# Twilio): the job reconciles it before anything else.
IN_FLIGHT = "in flight"


@dataclass(frozen=True)
class GateNoted:
    """What the gate decided about the text, for its play (the job hands it to the engine)."""

    decision: GateDecision
    repeated: bool  # the same deferral as last time: not a new decision
    play_id: str | None  # the text's play and step, read before the claim rewrote the row
    step_id: str | None


@dataclass
class Prepared:
    """What preparing a text came to: what its play hears, and what the job does after its
    commit."""

    result: Message | str  # the claimed row (send it now), or why not
    deferred_until: datetime | None = None  # the job runs again then (the job stages it)
    failed: Message | None = None  # failed before sending: its play hears `failed`
    gate: GateNoted | None = None  # the gate's decision, once it was asked


# A text with its account and its lead (None: a text to a phone with no lead).
Loaded = tuple[Message, Account, Lead | None]


async def prepare(
    jc: JobContext,
    session: AsyncSession,
    message_id: str,
    *,
    loaded: Loaded | None = None,
    numbers: Sequence[SenderNumber] | None = None,
    claims: list[Claim] | None = None,
    asked: Asked | None = None,
) -> Prepared:
    """Gate and claim the message under the contact lock, in the job's transaction.

    `loaded`: the text, its account and its lead, as the transaction that queued the text holds
    them (`gateway.jobs.sms_send.claim_staged`) or a batch read them; otherwise they are read.
    `numbers`: the account's sender numbers, as a batch read them in this transaction
    (`gateway.lead_number.account_numbers`); otherwise they are read with the gate's facts.
    `claims`: a batch's texts to claim together; a text the gate allows goes there, and its
    result is the row as it will be once the caller has claimed it (`claim_all`).
    `asked`: the gate's facts about the text, as a batch asked them under its contact locks
    (`ask_batch`); otherwise they are asked here."""
    # The row with its account and lead in one statement: the facts the gate reads after the
    # contact lock (the ledger, consent, spacing) are asked under it, below.
    found = loaded or (await session.exec(_TO_SEND, params={"message_id": message_id})).first()
    if found is None or found[0].direction != Direction.OUTBOUND:
        return Prepared("missing")
    message, account, lead = found
    if message.status == MessageStatus.SENDING:
        return Prepared(IN_FLIGHT)
    if message.status != MessageStatus.QUEUED:
        return Prepared(f"already {message.status}")
    moment = asked.at if asked is not None else now()
    # A reserved rate slot was waited for by arq's own (wall) clock; anything else is due
    # when its time has come by ours.
    early = message.send_after is not None and message.send_after > moment
    if early and message.gate_reason != RATE_SLOT:
        return Prepared("not due")
    await lock_contact(session, account.id, message.lead_phone)
    # The gate's facts, the lead's other texts and the number it knows, in one statement.
    if asked is None:
        ask = _ask(message, lead, moment, with_numbers=numbers is None)
        gathered = (await gate.gather_many(session, account, [ask]))[0]
    else:
        gathered = asked.gathered
    if numbers is None:
        numbers = gathered.rows  # the account's numbers, read in the same statement
    due_now, earliest, last_notice, known = gathered.also
    ahead = moment if due_now else earliest
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
        stage(session, SMS_SEND, message.id, at=ahead)
        return Prepared(f"behind an earlier text until {ahead.isoformat()}")
    if lead is not None and lead.phone_status != PhoneStatus.OK:
        await _finish(session, message, MessageStatus.FAILED, f"phone is {lead.phone_status}")
        return Prepared("phone flagged", failed=message)
    decision = rules.decide(gathered.request)
    noted = GateNoted(
        decision,
        # The same deferral found again (a sweep's second look): not a new decision.
        repeated=(message.gate_reason, message.send_after) == (decision.reason, decision.until),
        play_id=message.play_id,
        step_id=message.step_id,
    )
    if decision.action == "block":
        message.gate_reason = decision.reason
        await _finish(session, message, MessageStatus.BLOCKED, decision.detail or decision.reason)
        return Prepared(f"blocked: {decision.reason}", gate=noted)
    if decision.action == "defer":
        assert decision.until is not None
        message.send_after, message.gate_reason = decision.until, decision.reason
        message.updated_at = moment
        session.add(message)
        note_event(session, message.id, "deferred", detail=decision.detail)
        deferred_until = decision.until
    else:
        sender = _choose_sender(numbers, known, message)
        if sender is None:
            await _finish(session, message, MessageStatus.FAILED, "account has no sender number")
            return Prepared("no sender", gate=noted)
        held_until = sender_status.wait_until(sender, message, moment)
        wait = 0.0 if held_until is not None else await _rate_slot(jc, message, sender)
        if held_until is not None:
            # Twilio refused this sender lately and the account has no other: wait for the
            # number's next try rather than ask again (gateway/sms/sender_status.py).
            message.send_after = held_until
            message.gate_reason = sender_status.SENDER_UNAVAILABLE
            message.updated_at = moment
            session.add(message)
            note_event(
                session,
                message.id,
                "deferred",
                detail=f"sender {sender.number} unavailable ({sender.status_code})",
            )
            deferred_until = held_until
        elif wait > 0:
            message.send_after = now() + timedelta(seconds=wait)
            message.gate_reason, message.updated_at = RATE_SLOT, moment
            session.add(message)
            deferred_until = message.send_after
        else:
            # The opt-out notice is decided now, at send time, and written by the claim.
            notice = sms_notice.for_message(account, message, moment, last_notice)
            if notice.failure is not None:
                await _finish(session, message, MessageStatus.FAILED, notice.failure)
                return Prepared("too long", gate=noted)
            claim = _to_claim(
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
            if claims is not None:
                claims.append(claim)  # the caller claims its batch's texts together
                return Prepared(message, gate=noted)
            won = await claim_all(session, [claim])
            return Prepared(message if won else "claimed elsewhere", gate=noted)
    return Prepared(f"deferred until {deferred_until.isoformat()}", deferred_until, gate=noted)


async def _rate_slot(jc: JobContext, message: Message, sender: SenderNumber) -> float:
    """Seconds until this message's send slot on `sender` (0: now)."""
    if not jc.settings.sms_rate_limits or message.gate_reason == RATE_SLOT:
        return 0.0  # limits off, or the slot was reserved on an earlier run
    if message.purpose == Purpose.CONFIRMATION:
        return 0.0  # a STOP/HELP answer must not wait behind a burst; Twilio queues it
    rate = rate_for(sender.kind, sender.messaging_service_sid is not None)
    return await jc.rate_limiter.reserve(sender.number, rate)


@dataclass(frozen=True)
class Claim:
    """A text the gate allowed, with what its claim writes (`_CLAIM_WRITES`' parameters and its
    notice columns): claimed by `claim_all`, alone or with its batch's other texts."""

    message: Message
    params: dict[str, Any]
    notice: frozenset[str]


def _to_claim(
    message: Message,
    sender: SenderNumber,
    validity_period: int | None,
    moment: datetime,
    *,
    notice: dict[str, Any],
    gate_reason: str | None = None,
) -> Claim:
    params = {
        "from_number": sender.number,
        "moment": moment,
        "validity_period": validity_period,
        "gate_reason": gate_reason,
        **notice,
    }
    return Claim(message, params, frozenset(notice))


async def claim_all(session: AsyncSession, claims: Sequence[Claim]) -> set[str]:
    """queued -> sending, by compare-and-set: of two runs, one wins each text (with its notice
    columns); returns the ids this one won. One UPDATE ... RETURNING for the texts that share
    their notice columns (a drain's batch: one statement, not one a text). A text its
    transaction held unwritten (`outbox.hold_for_claim`) is written claimed instead, by its
    INSERT.

    A winner's `message` (the session's object) is set to what the UPDATE wrote, as loaded:
    the values are ours but the attempts, which come back from the UPDATE itself (RETURNING).
    Reading the whole row back made the ORM load a 35-column object again for every text."""
    won: set[str] = set()
    groups: dict[frozenset[str], list[Claim]] = {}
    for one in claims:
        if inspect(one.message).transient:
            # Held unwritten by the transaction that queued it (`outbox.hold_for_claim`): no
            # other can see it, so it is ours, written once as claimed.
            _claimed(session, one, one.message.attempts + 1)
            await insert_row(session, one.message)
            won.add(one.message.id)
            continue
        groups.setdefault(one.notice, []).append(one)
    for notice, group in groups.items():
        params: dict[str, Any] = {}
        for n, one in enumerate(group):
            params[f"id_{n}"] = one.message.id
            params.update({f"{name}_{n}": value for name, value in one.params.items()})
        rows = await all_rows(session, _claim_statement(len(group), notice), params)
        attempts: dict[str, int] = {row.id: row.attempts for row in rows}
        for one in group:
            if one.message.id in attempts:
                _claimed(session, one, attempts[one.message.id])
                won.add(one.message.id)
    return won


def _claimed(session: AsyncSession, one: Claim, attempts: int) -> None:
    """Set the session's text to what its claim wrote, as loaded, and note it `sending`."""
    written = {column: one.params[param] for column, param in _CLAIM_WRITES.items()}
    written.update({name: one.params[name] for name in one.notice})
    written.update(status=MessageStatus.SENDING, attempts=attempts)
    for name, value in written.items():
        set_committed_value(one.message, name, value)
    note_event(session, one.message.id, MessageStatus.SENDING)


# What the claim writes from its parameters: column -> parameter. The UPDATE and the values
# `claim_all` sets on the session's text are both made from it (and from the notice columns,
# the status and the attempts), so they cannot drift apart.
_CLAIM_WRITES = {
    "from_number": "from_number",
    "attempt_started_at": "moment",
    "validity_period": "validity_period",
    "gate_reason": "gate_reason",
    "updated_at": "moment",
}


@cache
def _claim_statement(count: int, notice: frozenset[str]) -> Any:
    """`claim_all`'s UPDATE ... RETURNING id, attempts for `count` texts, built once per count
    and set of notice columns: each row's values by a CASE on its id (parameters `id_<n>` and
    `<name>_<n>`, where the name is `_CLAIM_WRITES`' parameter or the notice column's)."""
    table = Message.__table__  # type: ignore[attr-defined]
    writes = {**_CLAIM_WRITES, **{name: name for name in notice}}

    def each(column: str, param: str) -> Any:
        typed = table.c[column].type
        if count == 1:
            return bindparam(f"{param}_0", type_=typed)
        return case(
            *(
                (table.c.id == bindparam(f"id_{n}"), bindparam(f"{param}_{n}", type_=typed))
                for n in range(count)
            )
        )

    return (
        update(table)
        .where(table.c.id.in_(numbered("id", count)), table.c.status == MessageStatus.QUEUED)
        .values(
            status=MessageStatus.SENDING,
            attempts=table.c.attempts + 1,
            **{column: each(column, param) for column, param in writes.items()},
        )
        .returning(table.c.id, table.c.attempts)
    )


async def requeue(
    session: AsyncSession, message_id: str, why: str, code: int | None, *, backoff: bool = False
) -> None:
    """sending -> queued, to be tried again: by the job now, or (`backoff`) by its own job
    held in Redis for the back-off, which no drain takes it from (`BACKOFF`)."""
    values: dict[str, Any] = {"status": MessageStatus.QUEUED, "updated_at": now()}
    if backoff:
        values["gate_reason"] = BACKOFF
    await session.exec(
        update(Message)
        .where(col(Message.id) == message_id, col(Message.status) == MessageStatus.SENDING)
        .values(**values)
    )
    note_event(session, message_id, "retry", error_code=code, detail=why)


async def confirm_ledger(session: AsyncSession, message: Message, sid: str) -> None:
    if message.ledger_event_id is None:
        return
    event = await session.get(OptOutEvent, message.ledger_event_id)
    if event is not None:
        await optouts.record_confirmation(session, event, body=message.body, message_sid=sid)


async def _finish(session: AsyncSession, message: Message, status: MessageStatus, why: str) -> None:
    message.status, message.updated_at = status, now()
    message.error_message = why[:500]
    session.add(message)
    note_event(session, message.id, status, detail=why[:500])


@dataclass(frozen=True)
class Asked:
    """The gate's facts about a text of a batch, asked with the others' (`ask_batch`)."""

    at: datetime  # the moment they were asked for
    gathered: gate.Gathered


async def ask_batch(
    session: AsyncSession, account: Account, loaded: Sequence[Loaded], moment: datetime
) -> dict[str, Asked]:
    """The gate's facts and the lead's other texts for a batch's texts (one a lead, their
    contacts locked), by id: in one statement, where `prepare` would ask one a text. The
    batch reads the account's numbers itself."""
    asks = [_ask(message, lead, moment, with_numbers=False) for message, _, lead in loaded]
    gathered = await gate.gather_many(session, account, asks)
    return {row[0].id: Asked(moment, facts) for row, facts in zip(loaded, gathered, strict=True)}


def _ask(message: Message, lead: Lead | None, moment: datetime, *, with_numbers: bool) -> gate.Ask:
    """The gate's question about a text, with `_lead_texts` beside it."""
    return gate.Ask(
        message.lead_phone,
        "sms",
        cast(GatePurpose, str(message.purpose)),
        _lead_texts(message, moment, with_numbers=with_numbers),
        {"lead": lead, "play": message.play_id, "at": moment},
    )


def _lead_texts(message: Message, moment: datetime, *, with_numbers: bool) -> gate.Also:
    """What `prepare` asks beside the gate's facts about the lead's other texts: whether a
    text still queued for this lead before `message` is due now, else the earliest time one
    may go (None: nothing is ahead of it); when the lead last got an opt-out notice
    (`sms_notice.last_notice_query`); the number it last dealt with (`gateway.lead_number`);
    and, `with_numbers`, the account's numbers (in `account_numbers`' order)."""
    confirmation = message.purpose == Purpose.CONFIRMATION
    return gate.Also(
        key=f"sms.lead_texts:{confirmation}:{with_numbers}",
        columns=_lead_texts_columns(confirmation),
        rows=NUMBERS_ORDER if with_numbers else None,
        params={
            "created_at": message.created_at,
            "id": message.id,
            "excluding": message.id,
            "moment": moment,
            "since": moment - NOTICE_INTERVAL,
        },
    )


# `prepare`'s first read: the text, its account and its lead (if any), built once.
_TO_SEND = (
    select(Message, Account, Lead)
    .join(Account, col(Account.id) == col(Message.account_id))
    .outerjoin(Lead, lead_of_message())
    .where(Message.id == bindparam("message_id"))
)


@cache
def _lead_texts_columns(confirmation: bool) -> tuple[Any, ...]:
    """`_lead_texts`'s scalar subqueries, built once per kind of text."""
    ahead = and_(
        col(Message.account_id) == bindparam("account_id"),
        col(Message.lead_phone) == bindparam("phone"),
        col(Message.direction) == Direction.OUTBOUND,
        among(col(Message.status), [MessageStatus.QUEUED, MessageStatus.SENDING]),
        col(Message.created_at) < bindparam("created_at", type_=UTCDateTime),
        col(Message.id) != bindparam("id"),
    )
    # A deferred confirmation never waits behind marketing; anything else keeps its order.
    if confirmation:
        ahead = and_(ahead, col(Message.purpose) == Purpose.CONFIRMATION)
    moment = bindparam("moment", type_=UTCDateTime)
    due_now = (
        select(func.count())
        .where(ahead, col(Message.send_after).is_(None) | (col(Message.send_after) <= moment))
        .scalar_subquery()
    )
    earliest = select(func.min(Message.send_after)).where(ahead).scalar_subquery()
    last_notice = sms_notice.last_notice_query(
        bindparam("account_id"),
        bindparam("phone"),
        bindparam("since", type_=UTCDateTime),
        bindparam("id"),
    )
    return due_now, earliest, last_notice, known_number(excluding=True)


def _choose_sender(
    numbers: Sequence[SenderNumber], known: str | None, message: Message
) -> SenderNumber | None:
    """The number the lead knows (gateway/lead_number.py), passing over a number Twilio
    refused lately while another works (sender_status.py)."""
    return pick(numbers, known, message.lead_phone, usable=lambda n: n.status == SenderStatus.OK)
