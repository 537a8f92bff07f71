"""Playbooks (versioned), plays, what happened in them (activities and the play log), reps,
source rules, lead originators, and idempotency keys of the inbound API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint, event, text
from sqlmodel import Column, Field, SQLModel

from gateway.db import UTCDateTime
from gateway.models.compliance import LedgerId
from gateway.models.defaults import empty_dict, empty_list, now


class PlaybookRecord(SQLModel, table=True):
    """A playbook as the account names it; its versions hold the documents."""

    __tablename__ = "playbooks"

    account_id: str = Field(foreign_key="accounts.id", primary_key=True, max_length=40)
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    latest_version: int
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class PlaybookVersion(SQLModel, table=True):
    """One published version; never changed, so a running play keeps the version it began on."""

    __tablename__ = "playbook_versions"

    account_id: str = Field(primary_key=True, max_length=40)
    playbook_id: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    document: str = Field(sa_column=Column(Text, nullable=False))
    format: str = Field(max_length=4)
    definition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class LeadOriginator(SQLModel, table=True):
    """(origin, key): the lead source's name and its id for the lead."""

    __tablename__ = "lead_originators"
    __table_args__ = (
        UniqueConstraint("account_id", "origin", "key", name="uq_lead_originators_origin_key"),
    )

    id: int | None = Field(default=None, sa_column=Column(LedgerId, primary_key=True))
    account_id: str = Field(max_length=40)
    lead_id: str = Field(foreign_key="leads.id", max_length=40, index=True)
    origin: str = Field(max_length=100)
    key: str = Field(max_length=200)


class PlayState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    HAS_OUTCOME = "has_outcome"
    OPTED_OUT = "opted_out"


class Play(SQLModel, table=True):
    __tablename__ = "plays"
    __table_args__ = (
        # At most one running play of a playbook per lead, enforced by the database.
        Index(
            "uq_plays_running",
            "account_id",
            "lead_id",
            "playbook_id",
            unique=True,
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
        Index("ix_plays_due", "state", "due_at"),
        # An account's drain, in the order its plays come due (partial: see migration 0026).
        Index(
            "ix_plays_running_due",
            "account_id",
            "due_at",
            "id",
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
        Index("ix_plays_account_created", "account_id", "created_at", "id"),
        # GET /v1/plays filters, in its (created_at, id) order; the lead's also serves replies.
        Index("ix_plays_account_state", "account_id", "state", "created_at", "id"),
        Index("ix_plays_account_playbook", "account_id", "playbook_id", "created_at", "id"),
        Index("ix_plays_account_lead", "account_id", "lead_id"),
        Index("ix_plays_account_rep", "account_id", "rep_id", "created_at", "id"),
        # The inbox, GET /v1/plays?awaiting=human, oldest first (partial: see migration 0018).
        Index(
            "ix_plays_awaiting_human",
            "account_id",
            "awaiting_human_since",
            "id",
            sqlite_where=text("awaiting_human_since IS NOT NULL"),
            postgresql_where=text("awaiting_human_since IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    lead_id: str = Field(foreign_key="leads.id", max_length=40)
    playbook_id: str = Field(max_length=64)
    playbook_version: int
    state: PlayState = Field(sa_column=Column(String(12), nullable=False))
    settings: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )
    answers: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )
    step_id: str | None = Field(default=None, max_length=64, description="the current step")
    # When the engine must act next (a delayed send, a wait, a re-engagement); None: nothing timed.
    due_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    waiting_reply: bool = False
    catch_all_level: int = 0
    reengagements_sent: int = 0
    drip_halted: bool = False
    paused: bool = Field(default=False, description="handed to a human (talk_to_human)")
    # Since when a person has the conversation (catch-all level 3, talk_to_human, a person's
    # reply); None while the playbook has it. Set: the play is in the inbox, the bot is quiet.
    awaiting_human_since: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    started: bool = Field(default=False, description="its first message reached Twilio")
    outcome: str | None = Field(default=None, max_length=64)
    rep_id: str | None = Field(default=None, max_length=40)
    source_rule_id: str | None = Field(default=None, max_length=40)
    last_lead_reply_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class PlayLog(SQLModel, table=True):
    """Everything that happened in a play, in order: steps, messages, replies, state changes."""

    __tablename__ = "play_log"

    id: int | None = Field(default=None, sa_column=Column(LedgerId, primary_key=True))
    play_id: str = Field(foreign_key="plays.id", max_length=40, index=True)
    at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    kind: str = Field(max_length=30)
    step_id: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )


class ActivityType(StrEnum):
    EVENT = "event"
    OUTCOME = "outcome"


class Activity(SQLModel, table=True):
    """An event or outcome of a play: what the business hears about by webhook."""

    __tablename__ = "activities"
    __table_args__ = (Index("ix_activities_account_id", "account_id", "id"),)

    id: int | None = Field(default=None, sa_column=Column(LedgerId, primary_key=True))
    public_id: str = Field(max_length=40, unique=True, description="stable event id")
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    play_id: str | None = Field(default=None, foreign_key="plays.id", max_length=40, index=True)
    lead_id: str | None = Field(default=None, foreign_key="leads.id", max_length=40)
    playbook_id: str | None = Field(default=None, max_length=64)
    type: ActivityType = Field(sa_column=Column(String(8), nullable=False))
    label: str = Field(max_length=64)
    note: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class Rep(SQLModel, table=True):
    __tablename__ = "reps"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40, index=True)
    name: str = Field(max_length=200)
    phone: str = Field(max_length=20)
    email: str | None = Field(default=None, max_length=320)
    available: bool = True
    # The address (lowercased) that followed a notice email's unsubscribe link: no more notice
    # emails to it (a new address gets them); texts and the lead's emails are not affected.
    notice_emails_stopped: str | None = Field(default=None, max_length=320)
    notice_emails_stopped_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class SourceRule(SQLModel, table=True):
    """ "API workflow": every new lead from `origin` starts `playbook_id`, reps assigned."""

    __tablename__ = "source_rules"
    __table_args__ = (
        UniqueConstraint("account_id", "origin", name="uq_source_rules_origin"),
        # Origins compare case-insensitively: "everquote" is EverQuote's rule too.
        UniqueConstraint("account_id", "origin_key", name="uq_source_rules_origin_key"),
    )

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    origin: str = Field(max_length=100, description="as the business wrote it (shown)")
    # origin_key(origin), kept by the listeners below: what uniqueness and matching compare.
    origin_key: str = Field(default="", max_length=100)
    playbook_id: str = Field(max_length=64)
    distribution: str = Field(default="round_robin", max_length=12)
    rep_ids: list[str] = Field(default_factory=empty_list, sa_column=Column(JSON, nullable=False))
    # Next position in rep_ids; advanced by an atomic UPDATE so workers never hand out twice.
    cursor: int = 0
    settings: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )
    # How the assigned rep is told of a lead: {"sms": bool, "email": bool}, only what the rule
    # says; the playbook's `notify` gives the rest (gateway/engine/rep_notices.py).
    notify: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class IdempotencyKey(SQLModel, table=True):
    """An `Idempotency-Key` seen on a POST: the same key and body get the same answer."""

    __tablename__ = "idempotency_keys"

    account_id: str = Field(primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int | None = None
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


def origin_key(origin: str) -> str:
    """How origins compare: case-folded (Python's, the same on every database), trimmed."""
    return origin.strip().casefold()[:100]


@event.listens_for(SourceRule, "before_insert")
@event.listens_for(SourceRule, "before_update")
def _keep_origin_key(_mapper: object, _connection: object, rule: SourceRule) -> None:
    rule.origin_key = origin_key(rule.origin)
