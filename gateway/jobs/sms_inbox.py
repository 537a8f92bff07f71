"""The `sms.inbox` job: inbound texts, acted on in batches after their webhook has answered.

`POST /twilio/sms` checks Twilio's signature and the parameters, appends the text as a pending
claim (`webhook_claims`, done_at empty: the one durable write, which a redelivery conflicts
with) and answers. This job takes the pending texts oldest first, a batch per transaction, and
does for each what the route once did: route it by the number it came in on, find the lead,
write the message and its history, act on STOP/START/HELP (the ledger, the confirmation, the
lead's plays), and hand any other text to the lead's running plays (`plays.reply` did that in a
transaction and a job of its own per text). Marking a claim done is in the same transaction as
what it caused, so a crash does it all again or not at all; a text is acted on once however
many runs overlap (each takes its rows by compare-and-set, and on PostgreSQL waits for the rows
another run holds, so a lead's texts are still taken in the order they came).

A text whose handling raises (a bug on odd input) must not hold up the texts behind it: its
batch is rolled back and taken again one text per transaction, and a text that fails again
while others go through is set aside: marked done and logged with its claim (its parameters
stay in `webhook_claims`). A database error, or a batch in which every text fails, is not the
texts' fault: it fails the job, and the texts stay pending for the next run (the sweep's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import SessionFactory, column_values, transaction
from gateway.engine import lifecycle
from gateway.engine.jobs import hand_reply
from gateway.ids import new_id
from gateway.job_context import job_context
from gateway.models import (
    Account,
    Direction,
    Lead,
    Message,
    MessageStatus,
    MessagingService,
    Purpose,
    SenderNumber,
    WebhookClaim,
)
from gateway.phones import InvalidPhone, to_e164
from gateway.sms.keyword_replies import handle as handle_keywords
from gateway.sms.status import write_event
from gateway.twilio_params import optional_count
from gateway.work import PLAY_REPLY, SMS_INBOX, job, stage

log = logging.getLogger(__name__)

CLAIM_KIND = "sms_in"  # the webhook_claims kind of an inbound text
INBOX = "sms"  # the job's one argument: one inbox, taken in order
# Texts per transaction: enough that a burst costs a few commits, few enough that the
# transaction (which holds SQLite's write lock) stays a few tens of milliseconds.
BATCH = 16
# Generous bounds on Twilio's numbers (10 media, 10 segments for 1,600 characters): the route
# turned away anything past them with a 400, so here they only read the values.
MAX_NUM_MEDIA = 100
MAX_NUM_SEGMENTS = 1000
MAX_MEDIA_URLS = 10
# The parameters read as text besides From and To (and the MediaUrls); the route turns away
# any other kind of value (a JSON body could hold one) with a 400.
TEXT_FIELDS = ("Body", "MessagingServiceSid", "OptOutType")


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question: is any inbound text pending (its job lost with Redis, or failed)?"""
    pending = (await session.execute(_ANY_PENDING)).first()
    return [] if pending is None else [(SMS_INBOX.job_id(INBOX), INBOX)]


@job(SMS_INBOX, due=due)
async def take_inbox(ctx: dict[str, Any], inbox: str) -> int:
    """Act on the pending inbound texts until none are left; returns how many."""
    jc = job_context(ctx)
    done = 0
    while True:
        taken: list[Taken] = []
        try:
            async with transaction(jc.sessions, brief=True) as session:
                taken = await _take(session, BATCH)
                await _receive_all(session, taken)
        except DBAPIError:
            raise  # the database's trouble: the texts stay pending for the next run
        except Exception:
            log.exception("a batch of inbound texts failed; taking them one at a time")
            taken = await _one_at_a_time(jc.sessions, [row.id for row in taken])
        done += len(taken)
        if len(taken) < BATCH:
            return done


@dataclass
class Taken:
    """A pending inbound text, taken by this transaction."""

    id: int
    key: str  # the MessageSid
    params: dict[str, Any]
    received_at: datetime


@dataclass
class _Batch:
    """What a batch's texts share: the numbers they came in on (one lookup per number), and
    whether a reply goes to the lead's plays in the batch's transaction (`replies_inline`) or
    by a `plays.reply` job of its own."""

    replies_inline: bool = True
    senders: dict[tuple[str, str], tuple[SenderNumber, Account] | None] = field(
        default_factory=dict
    )


async def _take(session: AsyncSession, limit: int, only: int | None = None) -> list[Taken]:
    """Mark up to `limit` pending texts done (or the one with id `only`, if still pending) and
    return them oldest first; the mark commits with what they cause."""
    params = {"claim_kind": CLAIM_KIND, "limit": limit, "moment": now(), "only": only}
    rows = (await session.execute(_TAKE, params)).all()
    return sorted((Taken(*row) for row in rows), key=lambda t: t.id)


async def _receive_all(
    session: AsyncSession, taken: Sequence[Taken], *, replies_inline: bool = True
) -> None:
    batch = _Batch(replies_inline)
    for text in taken:
        await _receive(session, batch, text)


async def _one_at_a_time(sessions: SessionFactory, ids: Sequence[int]) -> list[Taken]:
    """After a failed batch: each text in its own transaction. When some go through, those
    that fail again are the texts' own trouble: they are set aside (marked done, logged with
    their claim), so the texts behind them go on. When none does, the trouble is ours (a bug,
    the database): nothing is set aside and the job fails, leaving every text pending."""
    taken: list[Taken] = []
    failed: list[int] = []
    for claim_id in ids:
        try:
            async with transaction(sessions, brief=True) as session:
                one = await _take(session, 1, only=claim_id)
                # Its reply by a job of its own: should the plays be what fails, the text is
                # still recorded, and its reply retried by the job and the sweep.
                await _receive_all(session, one, replies_inline=False)
        except DBAPIError:
            raise
        except Exception:
            log.exception("inbound text (webhook claim %s) failed on its own", claim_id)
            failed.append(claim_id)
            continue
        taken.extend(one)
    if failed and not taken:
        raise RuntimeError(f"every inbound text of a batch failed (webhook claims {failed})")
    for claim_id in failed:
        async with transaction(sessions, brief=True) as session:
            taken.extend(await _take(session, 1, only=claim_id))
        log.error(
            "inbound text (webhook claim %s) set aside: it could not be handled while others "
            "could; its parameters are kept in webhook_claims",
            claim_id,
        )
    return taken


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name, "")
    return value if isinstance(value, str) else " ".join(value)


async def _sender(
    session: AsyncSession, batch: _Batch, params: dict[str, Any], to: str
) -> tuple[SenderNumber, Account] | None:
    """The number the text came in on and its account, in one query (once per batch).

    Routing never guesses: only a registered `To` routes (never the service SID alone, which
    once sent a lead's STOP to another account), and a `MessagingServiceSid` that another
    account registered contradicts it, so the text goes nowhere."""
    service = _text(params, "MessagingServiceSid")
    if (to, service) in batch.senders:
        return batch.senders[(to, service)]
    found = (await session.exec(_SENDER, params={"to": to, "service": service})).first()
    routed: tuple[SenderNumber, Account] | None = None
    if found is not None:
        number, account, service_owner = found
        if service_owner is not None and service_owner != account.id:
            log.warning(
                "inbound sms to %s (account %s) names messaging service %s of account %s: "
                "not routed",
                to,
                account.id,
                service,
                service_owner,
            )
        else:
            routed = (number, account)
    batch.senders[(to, service)] = routed
    return routed


async def _receive(session: AsyncSession, batch: _Batch, text: Taken) -> None:
    """One inbound text: routed, recorded, its keywords acted on, its reply staged."""
    params, sid = text.params, text.key
    from_raw, to = _text(params, "From"), _text(params, "To")
    found = await _sender(session, batch, params, to)
    if found is None:
        log.warning("inbound sms sid=%s to unregistered number %s: stored as a claim", sid, to)
        return
    _number, account = found
    try:
        phone = to_e164(from_raw)
    except InvalidPhone:
        phone = from_raw[:20]  # short codes and alphanumeric senders are kept as they came
    lead = (await session.exec(_LEAD, params={"account_id": account.id, "phone": phone})).first()
    lead_id = lead.id if lead is not None else None
    body = _text(params, "Body")
    num_media = optional_count(params, "NumMedia", maximum=MAX_NUM_MEDIA) or 0
    message_id = new_id("msg")
    row = {
        **_INBOUND,
        "id": message_id,
        "account_id": account.id,
        "lead_id": lead_id,
        "lead_phone": phone,
        "from_number": phone,
        "to_number": to,
        "body": body[:1600],
        "media": [_text(params, f"MediaUrl{i}") for i in range(min(num_media, MAX_MEDIA_URLS))],
        "twilio_sid": sid,
        "num_segments": optional_count(params, "NumSegments", maximum=MAX_NUM_SEGMENTS),
        # When Twilio brought it, not when this job ran.
        "created_at": text.received_at,
        "updated_at": text.received_at,
    }
    await session.exec(_INSERT_MESSAGE, params=row)
    await write_event(session, message_id, MessageStatus.RECEIVED)
    result = await handle_keywords(
        session,
        account,
        phone=phone,
        text=body,
        message_sid=sid,
        inbound_number=to,
        lead_id=lead_id,
        opt_out_type=_text(params, "OptOutType") or None,
    )
    if result.kind == "opt_out":
        await lifecycle.on_opt_out(session, account.id, phone)
    heard_by: list[str] = []
    if result.kind is None and lead is not None and not batch.replies_inline:
        stage(session, PLAY_REPLY, message_id)
    else:
        # A reply to the lead's plays now, or none owed: either way the sweep of undispatched
        # replies passes it by.
        if result.kind is None and lead is not None:
            heard_by = await hand_reply(session, lead, body, text.received_at)
        dispatched = {
            "message_id": message_id,
            "moment": now(),
            "play_id": heard_by[0] if heard_by else None,  # shown with the play's messages
        }
        await session.exec(_DISPATCHED, params=dispatched)
    log.info(
        "inbound sms sid=%s account=%s lead=%s keyword=%s%s",
        sid,
        account.id,
        lead_id,
        result.kind,
        "" if lead_id else " (unknown number)",
    )


# The job's statements, built once (they run per text).
_CLAIMS = WebhookClaim.__table__  # type: ignore[attr-defined]
_PENDING = core_select(_CLAIMS.c.id).where(
    _CLAIMS.c.kind == bindparam("claim_kind"), _CLAIMS.c.done_at.is_(None)
)
# On PostgreSQL the rows are locked as read (FOR UPDATE, no SKIP LOCKED): a second run waits
# for the first's batch rather than take the texts behind it, and so a lead's STOP and START
# are never acted on out of order. SQLite has one writer at a time anyway.
_TAKE = (
    update(_CLAIMS)
    .where(
        _CLAIMS.c.id.in_(
            _PENDING.where(
                (bindparam("only", type_=_CLAIMS.c.id.type).is_(None))
                | (_CLAIMS.c.id == bindparam("only", type_=_CLAIMS.c.id.type))
            )
            .order_by(_CLAIMS.c.id)
            .limit(bindparam("limit"))
            .with_for_update()
        ),
        _CLAIMS.c.done_at.is_(None),
    )
    .values(done_at=bindparam("moment"))
    .returning(_CLAIMS.c.id, _CLAIMS.c.key, _CLAIMS.c.params, _CLAIMS.c.received_at)
)
_ANY_PENDING = _PENDING.params(claim_kind=CLAIM_KIND).limit(1)
_SENDER = (
    select(SenderNumber, Account, MessagingService.account_id)
    .join(Account, col(Account.id) == col(SenderNumber.account_id))
    .outerjoin(MessagingService, col(MessagingService.sid) == bindparam("service"))
    .where(col(SenderNumber.number) == bindparam("to"))
)
_LEAD = select(Lead).where(
    col(Lead.account_id) == bindparam("account_id"), col(Lead.phone) == bindparam("phone")
)
# Core, not the ORM's unit of work (its flush was a fifth of the old route's CPU), from a dict
# of column values: building a `Message` object per text was a fifteenth of the job's CPU.
_MESSAGES = Message.__table__  # type: ignore[attr-defined]
_INSERT_MESSAGE = insert(_MESSAGES)
# An inbound text's row with every column at the model's default, built once; each text sets
# its own values over it (the defaults that are times are set per text).
_INBOUND = column_values(
    Message(
        id="",
        account_id="",
        lead_phone="",
        direction=Direction.INBOUND,
        body="",
        purpose=Purpose.REPLY,
        reason="inbound",
        status=MessageStatus.RECEIVED,
    )
)
_DISPATCHED = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("message_id"))
    .values(dispatched_at=bindparam("moment"), play_id=bindparam("play_id"))
)
