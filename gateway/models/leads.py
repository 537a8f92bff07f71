"""Leads: the people an account contacts, one per account and phone."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, String, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from gateway.db import UTCDateTime
from gateway.models.defaults import empty_dict, now


class PhoneStatus(StrEnum):
    """What sending has taught us about the lead's phone."""

    OK = "ok"
    LANDLINE = "landline"  # 21614 / 30006: texts can't reach it
    INVALID = "invalid"  # 21211 / 30005: the number can't be texted at all


class Lead(SQLModel, table=True):
    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("account_id", "phone", name="uq_leads_account_phone"),)

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    phone: str = Field(max_length=20)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    state: str | None = Field(default=None, max_length=2)
    postal_code: str | None = Field(default=None, max_length=10)
    additional_info: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )
    phone_status: PhoneStatus = Field(
        default=PhoneStatus.OK, sa_column=Column(String(10), nullable=False)
    )
    phone_status_code: int | None = Field(default=None, description="the Twilio error that set it")
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
