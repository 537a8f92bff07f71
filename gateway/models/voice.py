"""Party lines (the call flow that connects a lead and a rep) and the reps they hold.

The party line's state machine (`voice.machine`) is stored whole as JSON in `state`, with its
`policy` next to it; the columns beside them are what queries need (the sweep, the API, the
one-live-party-line-per-play rule). REST work for Twilio waits in `outbox` until a job does it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, text
from sqlmodel import Column, Field, SQLModel

from gateway.db import UTCDateTime
from gateway.models.defaults import empty_list, now


class PartyLineRecord(SQLModel, table=True):
    """One party line: its machine state, pending Twilio work and what it came to."""

    __tablename__ = "party_lines"
    __table_args__ = (
        # At most one live party line per play: a second POST or a re-run step can't ring twice.
        Index(
            "uq_party_lines_live",
            "account_id",
            "play_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        Index("ix_party_lines_wake", "wake_at"),
        Index("ix_party_lines_account_created", "account_id", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    play_id: str = Field(foreign_key="plays.id", max_length=40, index=True)
    lead_id: str = Field(foreign_key="leads.id", max_length=40)
    step_id: str | None = Field(
        default=None, max_length=64, description="the play's call step that started it"
    )
    from_number: str = Field(max_length=20, description="our number the calls come from")
    phase: str = Field(sa_column=Column(String(20), nullable=False))
    end_reason: str | None = Field(default=None, max_length=24)
    state: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    policy: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    greeting: str = Field(default="", sa_column=Column(Text, nullable=False))
    whisper: str = Field(default="", sa_column=Column(Text, nullable=False))
    # Twilio REST work decided and not yet done (calls to place, calls to end or redirect).
    outbox: list[dict[str, Any]] = Field(
        default_factory=empty_list, sa_column=Column(JSON, nullable=False)
    )
    # The outbox item a job is carrying out right now, and since when (a crash leaves it here).
    in_flight: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    in_flight_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # When a job must look at it: work in the outbox, a lead retry, the watchdog. None: nothing.
    wake_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    version: int = Field(default=0, description="bumped by every change; names its jobs")
    conference_sid: str | None = Field(default=None, max_length=34)
    connected_rep_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class RepReservation(SQLModel, table=True):
    """A rep held by a live party line: the primary key makes a second hold impossible."""

    __tablename__ = "rep_reservations"

    account_id: str = Field(primary_key=True, max_length=40)
    rep_id: str = Field(primary_key=True, max_length=40)
    party_line_id: str = Field(max_length=40, index=True)
    reserved_at: datetime = Field(
        default_factory=now, sa_column=Column(UTCDateTime, nullable=False)
    )
