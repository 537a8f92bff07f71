"""Leads: the payload the API takes for a lead (`LeadCreate`), creating or updating one lead per
account and phone (`upsert_lead`), and the public form with originators and consent evidence.

`additional_info` merges: keys given replace stored ones, a key given as null is deleted, keys
not given stay. The same rule applies to `POST /v1/plays`, `POST /v1/leads` and
`PATCH /v1/leads/{id}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, func
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance.zones import normalize_state
from gateway import contact_lock
from gateway.clock import Instant, now
from gateway.db import conflict_insert, dialect_insert, dialect_of, rows_of
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.json_bounds import json_bounds_error
from gateway.models import Consent, Lead, LeadOriginator, LedgerEvent, Message, PhoneStatus
from gateway.optouts import latest_opt_outs
from gateway.phones import Phone

MAX_ADDITIONAL_INFO = 16_000  # bytes of JSON; a lead's free data, not a document store
MAX_ORIGINATORS = 20  # given in one request
# Kept by one lead over every request: each of its webhooks carries them all.
MAX_LEAD_ORIGINATORS = 100
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_POSTAL_CODE = re.compile(r"^[0-9]{5}(-[0-9]{4})?$")


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _state(value: str) -> str:
    state = normalize_state(value)
    if state is None:
        raise ValueError("not a US state: use its 2-letter code, e.g. TX")
    return state


def _postal_code(value: str) -> str:
    value = value.strip()
    if not _POSTAL_CODE.match(value):
        raise ValueError("not a US ZIP code: 12345 or 12345-6789")
    return value


def check_additional_info(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse additional_info nested too deeply or larger than MAX_ADDITIONAL_INFO bytes of JSON."""
    problem = json_bounds_error(value)
    if problem is not None:
        raise ValueError(problem)
    try:
        # allow_nan=False: PostgreSQL's JSON refuses NaN and infinities (Python reads them).
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
    except ValueError:
        raise ValueError("numbers must be finite (no NaN or Infinity)") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if size > MAX_ADDITIONAL_INFO:
        raise ValueError(f"larger than {MAX_ADDITIONAL_INFO} bytes of JSON")
    return value


Email = Annotated[str, Field(min_length=3, max_length=320), AfterValidator(_email)]
UsState = Annotated[
    str, Field(min_length=2, max_length=40, description="2-letter US state"), AfterValidator(_state)
]
PostalCode = Annotated[str, Field(max_length=10), AfterValidator(_postal_code)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
AdditionalInfo = Annotated[
    dict[str, Any],
    Field(description="free JSON object; merged into the stored one, a null value deletes a key"),
    AfterValidator(check_additional_info),
]


class OriginatorCreate(BaseModel):
    """(origin, key): the lead source's name and its id for the lead."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    origin: str = Field(min_length=1, max_length=100, examples=["EverQuote"])
    key: str = Field(min_length=1, max_length=200, examples=["eq-123"])


class ConsentCreate(BaseModel):
    """Evidence of the consent the lead gave, as the business captured it."""

    model_config = ConfigDict(extra="forbid")

    captured_at: Instant = Field(description="when the lead consented; not in the future")
    source: str | None = Field(default=None, max_length=200, description="form, page, vendor")
    text: str | None = Field(default=None, max_length=5000, description="the words agreed to")
    url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")

    @field_validator("captured_at")
    @classmethod
    def _not_future(cls, value: datetime) -> datetime:
        if value > now():
            raise ValueError("must not be in the future")
        return value


class LeadCreate(BaseModel):
    """A lead as POST /v1/plays and POST /v1/leads take it; only `phone` is required."""

    model_config = ConfigDict(extra="forbid")

    phone: Phone
    first_name: Name | None = None
    last_name: Name | None = None
    email: Email | None = None
    state: UsState | None = None
    postal_code: PostalCode | None = None
    additional_info: AdditionalInfo | None = None
    originators: list[OriginatorCreate] = Field(default_factory=list, max_length=MAX_ORIGINATORS)
    consent: ConsentCreate | None = None


class OriginatorPublic(BaseModel):
    origin: str
    key: str


class ConsentPublic(BaseModel):
    id: str
    captured_at: datetime
    source: str | None
    text: str | None
    url: str | None
    recorded_at: datetime


class LeadPublic(BaseModel):
    """A lead as the API shows it."""

    id: str
    phone: str
    first_name: str | None
    last_name: str | None
    email: str | None
    state: str | None
    postal_code: str | None
    additional_info: dict[str, Any]
    phone_status: PhoneStatus = Field(
        description="whether the number can take texts (carrier errors); opt-outs are `opted_out`"
    )
    opted_out: bool = Field(
        description="the lead has opted out of this account's texts and calls (the ledger's "
        "latest event for the phone is an opt-out): the gate blocks every contact"
    )
    opted_out_at: datetime | None = Field(description="when, while opted out")
    opt_out_channel: str | None = Field(
        description="how, while opted out: sms, voice, email, api, web or manual"
    )
    originators: list[OriginatorPublic]
    consents: list[ConsentPublic]
    created_at: datetime
    updated_at: datetime


_DERIVED = ("originators", "consents", "opted_out", "opted_out_at", "opt_out_channel")
_FROM_ROW = [name for name in LeadPublic.model_fields if name not in _DERIVED]


class OriginatorConflict(ApiError):
    """An (origin, key) given for a lead already names another lead of the account."""

    def __init__(self, index: int, origin: str, key: str, other_lead_id: str) -> None:
        super().__init__(
            409,
            "conflict",
            f"originator ({origin!r}, {key!r}) already belongs to lead {other_lead_id}",
            f"originators[{index}]",
        )
        self.other_lead_id = other_lead_id


def merge_additional_info(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Given keys replace stored ones; a null value deletes the key."""
    merged = {**stored, **given}
    return {key: value for key, value in merged.items() if value is not None}


async def _insert_ignoring_conflict(
    session: AsyncSession, model: Any, values: dict[str, Any], key: list[str]
) -> bool:
    """Whether the row was written. INSERT ... ON CONFLICT DO NOTHING, then read: concurrent
    requests for the same phone or originator both succeed and see the one row, on SQLite and
    PostgreSQL alike."""
    connection = await session.connection()
    written = await connection.execute(
        conflict_insert(connection, model).values(values).on_conflict_do_nothing(index_elements=key)
    )
    return bool(written.rowcount)


def lead_of_message() -> ColumnElement[bool]:
    """The join of a message to its lead, within the message's own account."""
    return and_(
        col(Lead.id) == col(Message.lead_id), col(Lead.account_id) == col(Message.account_id)
    )


_FIELDS = ("first_name", "last_name", "email", "state", "postal_code")  # a request overwrites


@cache
def _upsert(dialect: str, fields: tuple[str, ...], also: Any = None, locking: bool = False) -> Any:
    """`upsert_lead`'s statement for the fields a request gives, built once per dialect (and
    `also` column, and whether it takes the contact lock): its parameters are `id`,
    `account_id`, `phone`, `moment` and the fields' (`locking`: `phone_0` for `phone`)."""
    insert = dialect_insert(dialect, Lead)
    excluded = insert.excluded  # built anew on every access
    moment: BindParameter[datetime] = bindparam("moment")
    upsert = insert.values(
        id=bindparam("id"),
        account_id=bindparam("account_id"),
        phone=contact_lock.lock_column(dialect) if locking else bindparam("phone"),
        additional_info={},
        phone_status=PhoneStatus.OK,
        created_at=moment,
        updated_at=moment,
        **{name: bindparam(name) for name in fields},
    ).on_conflict_do_update(
        index_elements=["account_id", "phone"],
        set_={name: excluded[name] for name in [*fields, "updated_at"]},
    )
    return rows_of(Lead, upsert, *(() if also is None else (also,)))


# session.info's key: the ids of the leads `upsert_lead` created in this transaction.
_CREATED = "leads_created"


def playless(session: AsyncSession, lead: Lead) -> bool:
    """Whether `lead` was created by this transaction and has had no play started since
    (`started_play`): one that needs no look for its running plays."""
    return lead.id in session.info.get(_CREATED, ())


def started_play(session: AsyncSession, lead: Lead) -> None:
    """A play was started for `lead` in this transaction: from now on it has one."""
    session.info.get(_CREATED, set()).discard(lead.id)


@dataclass(frozen=True)
class Also:
    """A caller's own question asked in `upsert_lead`'s one statement (RETURNING it beside the
    lead): one round trip where there would be two. `column`: a labelled scalar subquery built
    once by the caller, which may use the parameter `account_id` and names its own in
    `params`."""

    column: Any
    params: dict[str, Any]


async def upsert_lead(session: AsyncSession, account_id: str, lead_in: LeadCreate) -> Lead:
    """The account's lead for `lead_in.phone`, created or updated with the fields given.

    Adds new originators (OriginatorConflict, a 409, when one names another lead) and stores
    consent evidence as a Consent row. Nothing is committed: the caller's transaction is.
    """
    lead, _ = await upsert_lead_asking(session, account_id, lead_in, None)
    return lead


async def upsert_lead_asking(
    session: AsyncSession,
    account_id: str,
    lead_in: LeadCreate,
    also: Also | None,
    *,
    lock: bool = False,
) -> tuple[Lead, Any]:
    """`upsert_lead`, with the answer to `also` (None without one). `lock`: hold the contact's
    lock (`gateway.contact_lock`) from before the row is written, as `lock_contact` first
    would: on PostgreSQL, by the upsert itself (one statement fewer a lead)."""
    moment = now()
    given = {name: getattr(lead_in, name) for name in _FIELDS if getattr(lead_in, name) is not None}
    # Created, or updated with the fields given, and read back: one statement. Concurrent
    # requests for the same phone both succeed and see the one row, on SQLite and PostgreSQL.
    params = {
        "id": new_id("lead"),
        "account_id": account_id,
        "phone": lead_in.phone,
        "moment": moment,
        **given,
    }
    if also is not None:
        params.update(also.params)
    locking = lock and await contact_lock.taking(session, account_id, lead_in.phone)
    if locking:
        params["phone_0"] = lead_in.phone
    also_column = None if also is None else also.column
    upsert = _upsert(dialect_of(session), tuple(given), also_column, locking)
    found = (await session.exec(upsert, params=params)).one()
    lead: Lead = found[0]
    if lead.id == params["id"]:  # ours: the row was created, not found
        session.info.setdefault(_CREATED, set()).add(lead.id)
    if lead_in.additional_info:
        merged = merge_additional_info(lead.additional_info, lead_in.additional_info)
        try:
            lead.additional_info = check_additional_info(merged)
        except ValueError as exc:
            raise ApiError(422, "invalid", f"additional_info: {exc}", "additional_info") from None
        session.add(lead)
    await add_originators(session, lead, lead_in.originators)
    if lead_in.consent is not None:
        session.add(
            Consent(
                id=new_id("cns"),
                account_id=account_id,
                phone=lead.phone,
                lead_id=lead.id,
                **lead_in.consent.model_dump(),
            )
        )
    await session.flush()
    return lead, found[1] if also is not None else None


async def add_originators(
    session: AsyncSession, lead: Lead, originators: Sequence[OriginatorCreate]
) -> None:
    """Attach originators to the lead; one already naming another lead is a 409."""
    added = False
    for index, given in enumerate(originators):
        added |= await _insert_ignoring_conflict(
            session,
            LeadOriginator,
            {
                "account_id": lead.account_id,
                "lead_id": lead.id,
                "origin": given.origin,
                "key": given.key,
            },
            ["account_id", "origin", "key"],
        )
        owner = (
            await session.exec(
                select(LeadOriginator.lead_id).where(
                    LeadOriginator.account_id == lead.account_id,
                    LeadOriginator.origin == given.origin,
                    LeadOriginator.key == given.key,
                )
            )
        ).one()
        if owner != lead.id:
            raise OriginatorConflict(index, given.origin, given.key, owner)
    if added:
        # Counted after the inserts, so a refusal is the transaction's rollback of them.
        # Requests racing for one lead take turns: the upsert holds the lead's row until the
        # commit (tests/api/test_bounds_under_a_race.py). A lead that had more before this
        # bound keeps them.
        params = {"account_id": lead.account_id, "lead_id": lead.id}
        count = (await session.exec(_ORIGINATORS_OF, params=params)).one()
        if count > MAX_LEAD_ORIGINATORS:
            raise ApiError(
                409,
                "limit_reached",
                f"a lead keeps at most {MAX_LEAD_ORIGINATORS} originators; lead {lead.id} "
                f"would have {count}",
                "originators",
            )


# `add_originators`' count, built once.
_ORIGINATORS_OF = (
    select(func.count())
    .select_from(LeadOriginator)
    .where(
        LeadOriginator.account_id == bindparam("account_id"),
        LeadOriginator.lead_id == bindparam("lead_id"),
    )
)


async def public_leads(session: AsyncSession, leads: Iterable[Lead]) -> list[LeadPublic]:
    """Leads with their originators, consent evidence and opt-out status (four queries for
    any number of leads)."""
    leads = list(leads)
    if not leads:
        return []
    account_id = leads[0].account_id
    ids = [lead.id for lead in leads]
    originators: dict[str, list[OriginatorPublic]] = {i: [] for i in ids}
    for row in (
        await session.exec(
            select(LeadOriginator)
            .where(LeadOriginator.account_id == account_id, col(LeadOriginator.lead_id).in_(ids))
            .order_by(col(LeadOriginator.id))
        )
    ).all():
        originators[row.lead_id].append(OriginatorPublic(origin=row.origin, key=row.key))
    # Consent recorded for the phone before the lead existed (lead_id null) is still its evidence.
    by_phone = {lead.phone: lead.id for lead in leads}
    consents: dict[str, list[ConsentPublic]] = {i: [] for i in ids}
    for consent in (
        await session.exec(
            select(Consent)
            .where(
                Consent.account_id == account_id,
                or_(col(Consent.lead_id).in_(ids), col(Consent.phone).in_(list(by_phone))),
            )
            .order_by(col(Consent.recorded_at), col(Consent.id))
        )
    ).all():
        owner = consent.lead_id if consent.lead_id in consents else by_phone.get(consent.phone)
        if owner is not None:
            consents[owner].append(ConsentPublic.model_validate(consent, from_attributes=True))
    opt_outs = await latest_opt_outs(session, account_id, list(by_phone))
    public = []
    for lead in leads:
        event = opt_outs.get(lead.phone)
        opted_out = event is not None and event.event == LedgerEvent.OPT_OUT
        public.append(
            LeadPublic.model_validate(
                {
                    **{name: getattr(lead, name) for name in _FROM_ROW},
                    "originators": originators[lead.id],
                    "consents": consents[lead.id],
                    "opted_out": opted_out,
                    "opted_out_at": event.received_at if event and opted_out else None,
                    "opt_out_channel": str(event.channel) if event and opted_out else None,
                }
            )
        )
    return public
