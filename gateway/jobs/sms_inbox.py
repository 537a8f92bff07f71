"""The `sms.inbox` job: inbound texts, acted on in batches after their webhook has answered.

`POST /twilio/sms` checks Twilio's signature and the parameters, appends the text as a pending
claim and answers; this job takes the pending texts in batches as `claim_batches` says (oldest
first, each once, marked done in the transaction that acts on it). For each it does what the
route once did: route it by the number it came in on, find the lead, write the message and its
history, act on STOP/START/HELP (the ledger, the confirmation, the lead's plays), and hand any
other text to the lead's running plays (`plays.reply` did that in a transaction and a job of its
own per text). A batch reads its texts' leads in one statement, before the first text.

A text taken alone, after its batch failed, has its reply go to the lead's plays by a
`plays.reply` job of its own: should the plays be what fails, the text is still recorded, and
its reply retried by the job and the sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import bindparam, insert, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.claims import forget_old
from gateway.clock import now
from gateway.db import numbered, numbered_values
from gateway.engine import lifecycle
from gateway.engine.jobs import hand_reply
from gateway.ids import new_id
from gateway.job_context import job_context
from gateway.jobs import claim_batches
from gateway.jobs.claim_batches import Taken
from gateway.models import (
    Account,
    Direction,
    Lead,
    Message,
    MessageStatus,
    MessagingService,
    Purpose,
    SenderNumber,
)
from gateway.phones import InvalidPhone, to_e164
from gateway.rows import column_values
from gateway.sms.keyword_replies import handle as handle_keywords
from gateway.sms.status import note_event
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


# The sweep asks whether any is pending (its job lost with Redis, or failed).
due = claim_batches.due_while_pending(CLAIM_KIND, SMS_INBOX, INBOX)


# The sweep's tidy before the inbox's due query: every kind's claims, once old enough to be of no
# help against a redelivery (the inbox's kind holds most of them: a lead's every text).
@job(SMS_INBOX, due=due, tidy=forget_old)
async def take_inbox(ctx: dict[str, Any], inbox: str) -> int:
    """Act on the pending inbound texts until none are left; returns how many."""
    sessions = job_context(ctx).sessions
    return await claim_batches.drain(sessions, CLAIM_KIND, BATCH, _receive_all, "inbound text")


@dataclass
class _Batch:
    """What a batch's texts share: the numbers they came in on (one lookup per number), their
    senders' leads (one read for the batch), and whether a reply goes to the lead's plays in
    the batch's transaction (`replies_inline`) or by a `plays.reply` job of its own."""

    replies_inline: bool = True
    senders: dict[tuple[str, str], tuple[SenderNumber, Account] | None] = field(
        default_factory=dict
    )
    # (account id, phone) -> the account's lead for the phone (None: no lead).
    leads: dict[tuple[str, str], Lead | None] = field(default_factory=dict)
    # The texts marked dispatched, as `_DISPATCHED`'s parameters: one execution for the batch.
    dispatched: list[dict[str, Any]] = field(default_factory=list)


async def _receive_all(session: AsyncSession, taken: Sequence[Taken], alone: bool) -> None:
    batch = _Batch(replies_inline=not alone)
    await _read_leads(session, batch, taken)
    for text in taken:
        await _receive(session, batch, text)
    if batch.dispatched:
        await session.exec(_DISPATCHED, params=batch.dispatched)


async def _read_leads(session: AsyncSession, batch: _Batch, taken: Sequence[Taken]) -> None:
    """The leads of every routed text of the batch, in one read: an inbound text creates no
    lead, so what the batch's texts find is what is here when the batch begins."""
    wanted: dict[tuple[str, str], None] = {}
    for text in taken:
        found = await _sender(session, batch, text.params, _text(text.params, "To"))
        if found is not None:
            wanted[(found[1].id, _phone(_text(text.params, "From")))] = None
    if not wanted:
        return
    batch.leads = dict.fromkeys(wanted)
    params = {
        **numbered_values("account_id", (account_id for account_id, _ in wanted)),
        **numbered_values("phone", (phone for _, phone in wanted)),
    }
    for lead in (await session.exec(_leads_among(len(wanted)), params=params)).all():
        batch.leads[(lead.account_id, lead.phone)] = lead


def _phone(from_raw: str) -> str:
    """The sender's phone as leads hold it."""
    try:
        return to_e164(from_raw)
    except InvalidPhone:
        return from_raw[:20]  # short codes and alphanumeric senders are kept as they came


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
    phone = _phone(from_raw)
    lead = batch.leads[(account.id, phone)]
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
    note_event(session, message_id, MessageStatus.RECEIVED)
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
        batch.dispatched.append(dispatched)  # nothing in the batch reads it meanwhile
    log.info(
        "inbound sms sid=%s account=%s lead=%s keyword=%s%s",
        sid,
        account.id,
        lead_id,
        result.kind,
        "" if lead_id else " (unknown number)",
    )


# The job's statements, built once (they run per text).
_SENDER = (
    select(SenderNumber, Account, MessagingService.account_id)
    .join(Account, col(Account.id) == col(SenderNumber.account_id))
    .outerjoin(MessagingService, col(MessagingService.sid) == bindparam("service"))
    .where(col(SenderNumber.number) == bindparam("to"))
)


@cache
def _leads_among(count: int) -> Any:
    """`_read_leads`' statement for `count` (account, phone) pairs, built once per count: an OR
    of the pairs, each of which both databases look up by the leads' unique index (SQLite read
    the whole table for the row-value `IN` of the pairs)."""
    pairs = zip(numbered("account_id", count), numbered("phone", count), strict=True)
    return select(Lead).where(
        or_(*((col(Lead.account_id) == a) & (col(Lead.phone) == p) for a, p in pairs))
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
