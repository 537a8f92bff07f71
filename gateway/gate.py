"""The gate as the gateway runs it: at the moment a text, call or email is about to leave,
`decide` gathers every fact `compliance.gate.decide` weighs (the account's settings, the
ledger's opt-out status, the lead's consent evidence and where the lead is, the contacts that
count toward a cap, the lead's last message, an email address's unsubscribe) and returns the
decision. Callers name the contact, never its facts: what the gate knows is decided here once,
so a route's early answer and the job's answer at send time are the same rules on the same facts.

The gate only decides; what a decision does to the play it belongs to (a block ends it, a
deferral is logged) is the engine's: `gateway.engine.lifecycle.on_gate_decision`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict, Unpack

from sqlalchemy import BindParameter, bindparam, func, literal
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select as SqlModelSelect
from sqlmodel.sql.expression import SelectOfScalar

from compliance import consent
from compliance import gate as rules
from compliance.gate import Channel, GateDecision, GateRequest, Purpose
from gateway import playbook_versions
from gateway.account_settings import ComplianceSettings, compliance_settings
from gateway.clock import now
from gateway.db import among, first_row
from gateway.models import (
    Account,
    Consent,
    Direction,
    Lead,
    LedgerEvent,
    Message,
    PartyLineRecord,
    Play,
    Rep,
    SourceRule,
    ledger_status,
)
from gateway.models import Purpose as MessagePurpose
from gateway.optouts import email_unsubscribed

logger = logging.getLogger(__name__)

# A source rule's settings may carry its own limit; 0 there means "no limit" (settings are
# scalars, so null can't say it), e.g. for the business's own web form.
SOURCE_RULE_SETTING = "max_consent_age_days"


class Contact(TypedDict, total=False):
    """What a caller may say of the contact beside its phone (`decide`, `gather`).

    `lead`: the lead row when there is one (its state and ZIP place it); `play`: the play the
    contact belongs to (row or id: its source rule may set its own consent age, its playbook
    whether email continues after an opt-out); `email_to`: an email's address (its unsubscribe
    counts); `rep`: a notice to this rep (staff mail: only the rep's own email opt-out holds it
    back); `at`: the moment decided for (now if not given)."""

    lead: Lead | None
    play: Play | str | None
    email_to: str | None
    rep: Rep | None
    at: datetime | None


async def decide(
    session: AsyncSession,
    account: Account,
    phone: str,
    *,
    channel: Channel,
    purpose: Purpose,
    **contact: Unpack[Contact],
) -> GateDecision:
    """Allow, defer (until T) or block one contact of `account` with `phone`. Call it when
    sending, not when scheduling: an opt-out recorded a second ago must stop a message queued
    an hour ago. A fact the rules can't use for this contact is not looked up."""
    gathered = await gather(session, account, phone, channel=channel, purpose=purpose, **contact)
    return rules.decide(gathered.request)


@dataclass(frozen=True)
class Also:
    """A caller's own questions about the contact, asked in the gate's one SELECT beside its
    facts: one round trip where there would be two (a text's sender asks about the lead's other
    texts). `columns`: scalar subqueries built once by the caller, which may use the gate's
    parameters `account_id` and `phone` and name their own in `params`; `key` names their shape,
    for the statement the gate builds once per shape."""

    key: str
    columns: tuple[Any, ...]
    params: dict[str, Any]
    # The account's rows of one model (its `account_id`), loaded beside the facts in this order:
    # one statement where a text sent alone needs two (its sender is one of the account's
    # numbers). The facts repeat on each row; an account with none still has the one row.
    rows: tuple[Any, Any] | None = None  # (model, its column to order by)


@dataclass(frozen=True)
class Gathered:
    """The gate's question, with every fact it weighs (`compliance.gate.decide` answers it),
    and the answers to the caller's `Also`, in its order, with its `rows` (the model objects)."""

    request: GateRequest
    also: tuple[Any, ...] = ()
    rows: tuple[Any, ...] = ()


async def gather(
    session: AsyncSession,
    account: Account,
    phone: str,
    *,
    channel: Channel,
    purpose: Purpose,
    also: Also | None = None,
    **contact: Unpack[Contact],
) -> Gathered:
    """`decide`'s facts, without the decision: for a caller that asks its own questions in the
    same statement (`also`) and looks at their answers before it asks the rules. Deciding reads
    nothing more, so the decision is `compliance.gate.decide(gathered.request)`."""
    at = contact.get("at") or now()
    lead, play = contact.get("lead"), contact.get("play")
    settings = compliance_settings(account)
    state = lead.state if lead is not None else None
    postal_code = lead.postal_code if lead is not None else None
    # Spare the consent facts for replies, confirmations and email; the rest in one query.
    wants_consent = consent.applies(channel, purpose)
    facts = await _facts(
        session,
        account.id,
        phone,
        consent=wants_consent,
        play=play if wants_consent else None,
        last_inbound=rules.uses_last_inbound(channel, purpose),
        also=also,
    )
    max_age = _consent_age(settings, facts.rule_id, facts.rule_settings) if wants_consent else None
    contacts: list[datetime] = []
    if rules.counts_contacts(channel, purpose, phone, state, postal_code):
        contacts = await initiated_contacts(session, account.id, phone, at)
    continues, unsubscribed = False, False
    if channel == "email":
        play = await _play(session, account.id, play)
        continues, unsubscribed = await _email_facts(
            session, account.id, play, contact.get("email_to"), contact.get("rep")
        )
    request = GateRequest(
        channel=channel,
        purpose=purpose,
        phone=phone,
        at=at,
        opted_out=facts.status == LedgerEvent.OPT_OUT,
        email_continues_after_opt_out=continues,
        email_unsubscribed=unsubscribed,
        state=state,
        postal_code=postal_code,
        fallback_tz=settings.timezone,
        window=settings.window(),
        initiated_contacts_last_24h=contacts,
        last_inbound_at=facts.last_inbound,
        reply_grace_enabled=settings.reply_grace,
        consent_captured_at=facts.consent_at,
        max_consent_age=max_age,
        require_consent=settings.require_consent,
    )
    return Gathered(request, facts.also, facts.rows)


@dataclass(frozen=True)
class _Facts:
    """What the gate reads about a contact, asked in one statement (`_facts`)."""

    status: str | None  # the phone's latest ledger event (None: none on record)
    consent_at: datetime | None = None
    rule_id: str | None = None  # the play's source rule, with its settings
    rule_settings: dict[str, Any] | None = None
    last_inbound: datetime | None = None
    also: tuple[Any, ...] = ()  # the caller's `Also`, answered
    rows: tuple[Any, ...] = ()  # its `rows`, read


async def _facts(
    session: AsyncSession,
    account_id: str,
    phone: str,
    *,
    consent: bool,
    play: Play | str | None,
    last_inbound: bool,
    also: Also | None = None,
) -> _Facts:
    """The phone's ledger status, and as asked its latest consent, its play's source rule,
    when the lead last texted and the caller's `also`: one SELECT of scalar subqueries (one
    round trip a send), each scoped by the account."""
    params: dict[str, Any] = {"account_id": account_id, "phone": phone}
    if also is not None:
        params.update(also.params)
    rule: _RuleBy = None
    if consent and isinstance(play, str):
        rule, params["play_id"] = "play", play
    elif (
        consent
        and isinstance(play, Play)
        and play.account_id == account_id  # the play's rule, if the play is the account's
        and play.source_rule_id is not None
    ):
        rule, params["rule_id"] = "rule", play.source_rule_id
    shape = (consent, rule, last_inbound, also.key if also is not None else None)
    built = _FACTS_QUERIES.get(shape)
    if built is None:
        built = _FACTS_QUERIES[shape] = _facts_query(consent, rule, last_inbound, also)
    query, names = built
    rows: tuple[Any, ...] = ()
    found: Any
    if also is not None and also.rows is not None:
        # Model objects: loaded by the ORM, into the session as any read of them would be.
        every = (await session.exec(query, params=params)).all()
        rows = tuple(row[-1] for row in every if row[-1] is not None)
        found = every[0][:-1]  # outer-joined to one row: there is always one
    else:
        found = await first_row(session, query, params)  # scalar subqueries: always one row
        assert found is not None
    facts = dict(zip(names, found[: len(names)], strict=True))
    return _Facts(**facts, also=tuple(found[len(names) :]), rows=rows)


# How `_facts` finds the play's source rule: by the play's id, by the rule's id, or not at all.
_RuleBy = Literal["play", "rule"] | None


# `_facts`' statements, one per shape of question: built once, since building one costs more
# CPU than running it. A handful of shapes in all (the rule's way, consent, last inbound, and
# the few callers' `Also` keys).
_FACTS_QUERIES: dict[
    tuple[bool, _RuleBy, bool, str | None], tuple[SqlModelSelect[Any], tuple[str, ...]]
] = {}


def _facts_query(
    consent: bool, rule: _RuleBy, last_inbound: bool, also: Also | None
) -> tuple[SqlModelSelect[Any], tuple[str, ...]]:
    """`_facts`' statement for one shape of question, with its parameters named `account_id`,
    `phone`, `play_id`, `rule_id` and the `also`'s own; and the names of the gate's columns
    (the `also`'s follow them)."""
    account_id: BindParameter[str] = bindparam("account_id")
    phone: BindParameter[str] = bindparam("phone")
    columns: list[Any] = [ledger_status(account_id, phone).label("status")]
    if consent:
        columns.append(
            select(func.max(Consent.captured_at))
            .where(Consent.account_id == account_id, Consent.phone == phone)
            .scalar_subquery()
            .label("consent_at")
        )
        if rule is not None:
            found = select(SourceRule).where(SourceRule.account_id == account_id)
            if rule == "play":
                found = found.join(Play, col(Play.source_rule_id) == col(SourceRule.id)).where(
                    Play.id == bindparam("play_id"), Play.account_id == account_id
                )
            else:
                found = found.where(SourceRule.id == bindparam("rule_id"))
            columns.append(
                found.with_only_columns(col(SourceRule.id)).scalar_subquery().label("rule_id")
            )
            columns.append(
                found.with_only_columns(col(SourceRule.settings))
                .scalar_subquery()
                .label("rule_settings")
            )
    if last_inbound:
        columns.append(_last_inbound(account_id, phone).scalar_subquery().label("last_inbound"))
    names = tuple(column.name for column in columns)
    query = select(*columns, *(also.columns if also is not None else ()))
    if also is not None and also.rows is not None:
        model, order = also.rows
        one = select(literal(1).label("one")).subquery("one")
        query = (
            query.add_columns(model)
            .select_from(one)
            .outerjoin(model, model.account_id == account_id)
            .order_by(order)
        )
    return query, names


async def _play(session: AsyncSession, account_id: str, play: Play | str | None) -> Play | None:
    if isinstance(play, str):
        play = await session.get(Play, play)
    return play if play is not None and play.account_id == account_id else None


async def _email_facts(
    session: AsyncSession,
    account_id: str,
    play: Play | None,
    address: str | None,
    rep: Rep | None,
) -> tuple[bool, bool]:
    """(email continues after the phone's opt-out, the address unsubscribed) for an email."""
    unsubscribed = False
    if rep is not None:
        # A notice to a rep is about their work: a STOP from the rep's phone is about texts,
        # and the rep may have stopped this kind of notice by its own unsubscribe link.
        if address is not None:
            address = address.strip().lower()
            unsubscribed = rep.notice_emails_stopped == address or await email_unsubscribed(
                session, account_id, address
            )
        return True, unsubscribed
    if address is not None:
        unsubscribed = await email_unsubscribed(session, account_id, address)
    if play is None:
        return False, unsubscribed
    # The play's playbook version (immutable, so as it was when the email was queued).
    playbook = await playbook_versions.load(
        session, account_id, play.playbook_id, play.playbook_version
    )
    return playbook is not None and playbook.email_after_opt_out, unsubscribed


def _last_inbound(account_id: Any, phone: Any) -> SelectOfScalar[datetime]:
    return (
        select(Message.created_at)
        .where(
            Message.account_id == account_id,
            Message.lead_phone == phone,
            Message.direction == Direction.INBOUND,
        )
        .order_by(col(Message.created_at).desc())
        .limit(1)
    )


async def last_inbound_at(session: AsyncSession, account_id: str, phone: str) -> datetime | None:
    """When the lead last texted the account (None: never)."""
    return (await session.exec(_last_inbound(account_id, phone))).first()


# Texts that went to Twilio count as contacts; queued, canceled and blocked ones never left.
TEXT_CONTACT_STATUSES = ("sending", "accepted", "sent", "delivered", "read", "undelivered")
CAP_PERIOD = timedelta(hours=24)


async def initiated_contacts(
    session: AsyncSession, account_id: str, phone: str, moment: datetime
) -> list[datetime]:
    """When the account initiated a text or a call to `phone` in the 24 hours before `moment`.

    One list for both channels: a state's cap counts every initiated contact, so three texts
    hold back a call and three call attempts hold back a text (compliance/frequency.py).
    """
    since = moment - CAP_PERIOD
    texts = select(Message.attempt_started_at).where(
        Message.account_id == account_id,
        Message.lead_phone == phone,
        Message.purpose == MessagePurpose.INITIATED,
        among(col(Message.status), TEXT_CONTACT_STATUSES),
        col(Message.attempt_started_at) >= since,
    )
    times = [at for at in (await session.exec(texts)).all() if at is not None]
    # A party line's lead attempts are in its state; one created up to a day before `since`
    # may still have retried inside the period.
    lines = (
        select(PartyLineRecord.state)
        .join(Lead, col(Lead.id) == col(PartyLineRecord.lead_id))
        .where(
            PartyLineRecord.account_id == account_id,
            Lead.account_id == account_id,
            Lead.phone == phone,
            col(PartyLineRecord.created_at) >= since - CAP_PERIOD,
        )
    )
    for state in (await session.exec(lines)).all():
        for leg in state.get("lead_legs", ()):
            at = datetime.fromisoformat(leg["requested_at"])
            if at >= since:
                times.append(at)
    return times


def _consent_age(
    settings: ComplianceSettings, rule_id: str | None, rule_settings: dict[str, Any] | None
) -> timedelta | None:
    """The limit for this contact: the play's source rule's, else the account's (None: none)."""
    days = settings.max_consent_age_days
    if rule_settings is not None and SOURCE_RULE_SETTING in rule_settings:
        value = rule_settings[SOURCE_RULE_SETTING]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            days = value or None
        else:
            logger.warning(
                "source rule %s: %s=%r is not a whole number of days; the account's applies",
                rule_id,
                SOURCE_RULE_SETTING,
                value,
            )
    return timedelta(days=days) if days else None
