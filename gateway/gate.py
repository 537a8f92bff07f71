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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict, Unpack, cast

from sqlalchemy import BindParameter, bindparam, func, literal, literal_column, union_all
from sqlalchemy import select as core_select
from sqlalchemy.sql import visitors
from sqlalchemy.types import NullType
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
from gateway.db import all_rows, among, first_row
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
    return (await gather_many(session, account, [Ask(phone, channel, purpose, also, contact)]))[0]


@dataclass(frozen=True)
class Ask:
    """One contact's question to `gather_many`: `gather`'s arguments."""

    phone: str
    channel: Channel
    purpose: Purpose
    also: Also | None = None
    contact: Contact = field(default_factory=Contact)


async def gather_many(
    session: AsyncSession, account: Account, asks: Sequence[Ask]
) -> list[Gathered]:
    """`gather` for several of the account's contacts (a batch of texts), in their order: the
    questions of one shape (the same kind of contact and `Also.key`) in one statement, where
    they would be one a contact. The facts are per phone, so a batch's contacts are as many
    phones; an `Also` with `rows` is asked alone (a batch reads its rows once itself)."""
    plans = [_plan(account.id, ask) for ask in asks]
    facts = await _facts_many(session, plans)
    return [
        await _gathered(session, account, ask, plan, found)
        for ask, plan, found in zip(asks, plans, facts, strict=True)
    ]


@dataclass(frozen=True)
class _Plan:
    """What `_facts` asks about one contact: its statement's shape and its parameters."""

    at: datetime
    consent: bool  # the consent facts (not for replies, confirmations and email)
    shape: tuple[bool, _RuleBy, bool, str | None]  # `_FACTS_QUERIES`' key
    params: dict[str, Any]
    also: Also | None


def _plan(account_id: str, ask: Ask) -> _Plan:
    contact = ask.contact
    at = contact.get("at") or now()
    play = contact.get("play")
    # Spare the consent facts for replies, confirmations and email; the rest in one query.
    wants_consent = consent.applies(ask.channel, ask.purpose)
    last_inbound = rules.uses_last_inbound(ask.channel, ask.purpose)
    also = ask.also
    params: dict[str, Any] = {"account_id": account_id, "phone": ask.phone}
    if also is not None:
        params.update(also.params)
    rule: _RuleBy = None
    if wants_consent and isinstance(play, str):
        rule, params["play_id"] = "play", play
    elif (
        wants_consent
        and isinstance(play, Play)
        and play.account_id == account_id  # the play's rule, if the play is the account's
        and play.source_rule_id is not None
    ):
        rule, params["rule_id"] = "rule", play.source_rule_id
    shape = (wants_consent, rule, last_inbound, also.key if also is not None else None)
    return _Plan(at, wants_consent, shape, params, also)


async def _gathered(
    session: AsyncSession, account: Account, ask: Ask, plan: _Plan, facts: _Facts
) -> Gathered:
    """The gate's question about `ask`'s contact, from its `facts` and what is asked apart
    from them (the contacts toward a cap, an email's facts)."""
    contact, phone, channel, purpose, at = ask.contact, ask.phone, ask.channel, ask.purpose, plan.at
    lead, play = contact.get("lead"), contact.get("play")
    settings = compliance_settings(account)
    state = lead.state if lead is not None else None
    postal_code = lead.postal_code if lead is not None else None
    max_age = _consent_age(settings, facts.rule_id, facts.rule_settings) if plan.consent else None
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


def _query(plan: _Plan) -> tuple[SqlModelSelect[Any], tuple[str, ...]]:
    built = _FACTS_QUERIES.get(plan.shape)
    if built is None:
        consent_, rule, last_inbound, _ = plan.shape
        built = _FACTS_QUERIES[plan.shape] = _facts_query(consent_, rule, last_inbound, plan.also)
    return built


def _found(names: tuple[str, ...], found: Sequence[Any], rows: tuple[Any, ...] = ()) -> _Facts:
    facts = dict(zip(names, found[: len(names)], strict=True))
    return _Facts(**facts, also=tuple(found[len(names) :]), rows=rows)


async def _facts(session: AsyncSession, plan: _Plan) -> _Facts:
    """The phone's ledger status, and as asked its latest consent, its play's source rule,
    when the lead last texted and the caller's `also`: one SELECT of scalar subqueries (one
    round trip a send), each scoped by the account."""
    query, names = _query(plan)
    also = plan.also
    if also is not None and also.rows is not None:
        # Model objects: loaded by the ORM, into the session as any read of them would be.
        every = (await session.exec(query, params=plan.params)).all()
        rows = tuple(row[-1] for row in every if row[-1] is not None)
        return _found(names, every[0][:-1], rows)  # outer-joined to one row: always one
    found = await first_row(session, query, plan.params)  # scalar subqueries: always one row
    assert found is not None
    return _found(names, found)


async def _facts_many(session: AsyncSession, plans: Sequence[_Plan]) -> list[_Facts]:
    """`_facts` for each plan: those of one shape (more than one, no `rows`) in one SELECT of
    the same scalar subqueries, correlated to a row of parameters per contact."""
    facts: list[_Facts | None] = [None] * len(plans)
    shapes: dict[tuple[bool, _RuleBy, bool, str | None], list[int]] = {}
    for index, plan in enumerate(plans):
        if plan.also is not None and plan.also.rows is not None:
            facts[index] = await _facts(session, plan)
        else:
            shapes.setdefault(plan.shape, []).append(index)
    chunks = [
        every[start : start + MANY_AT_MOST]
        for every in shapes.values()
        for start in range(0, len(every), MANY_AT_MOST)
    ]
    for indexes in chunks:
        if len(indexes) == 1:
            facts[indexes[0]] = await _facts(session, plans[indexes[0]])
            continue
        first = plans[indexes[0]]
        query, names = _query(first)
        # The parameters every contact shares (the account) once; the rest a row each.
        per_row = tuple(sorted(name for name in first.params if name != "account_id"))
        many = _batched(first.shape, query, per_row, len(indexes))
        params: dict[str, Any] = {"account_id": first.params["account_id"]}
        for number, index in enumerate(indexes):
            params.update({f"{name}_{number}": plans[index].params[name] for name in per_row})
        found = await all_rows(session, many, params)
        for index, row in zip(indexes, found, strict=True):  # in the contacts' order (`k`)
            facts[index] = _found(names, row[:-1])
    return cast(list[_Facts], facts)  # each plan's, above


# The most contacts `_facts_many` asks about in one statement: a batch's (a drain's batch holds
# at most `gateway.jobs.sms_sends.BATCH`). More are asked in several, so that neither a
# statement's size nor the count of statements built and kept (`_BATCHED`, one per shape and
# count) grows with a caller's list.
MANY_AT_MOST = 16

# `_facts_many`'s statements: a shape's statement over `count` contacts, built once each.
_BATCHED: dict[tuple[Any, tuple[str, ...], int], Any] = {}


def _batched(shape: Any, single: Any, per_row: tuple[str, ...], count: int) -> Any:
    """`single` (a SELECT of scalar subqueries about one contact) asked of `count` contacts:
    its parameters named in `per_row` become columns of a derived table with a row per contact
    (`name_0`, `name_1`, ... bound), which the subqueries correlate to; one row per contact,
    in their order, with the contact's index last."""
    key = (shape, per_row, count)
    built = _BATCHED.get(key)
    if built is not None:
        return built
    types: dict[str, Any] = {}
    for element in visitors.iterate(single):
        # The type a comparison gave the parameter (a timestamp's, a string's), for its column.
        if (
            isinstance(element, BindParameter)
            and element.key in per_row
            and isinstance(types.get(element.key, NullType()), NullType)
        ):
            types[element.key] = element.type
    rows = []
    for number in range(count):
        columns: list[Any] = [
            bindparam(f"{name}_{number}", type_=types.get(name)).label(name) for name in per_row
        ]
        rows.append(core_select(*columns, literal_column(str(number)).label("k")))
    contacts = union_all(*rows).subquery("contact")

    def to_column(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.key in per_row:
            return contacts.c[element.key]
        return None

    no_options: dict[str, Any] = {}
    traversed: Any = visitors.replacement_traverse(single, no_options, to_column)
    built = traversed.add_columns(contacts.c.k).select_from(contacts).order_by(contacts.c.k)
    _BATCHED[key] = built
    return built


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
