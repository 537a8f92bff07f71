"""Accounts (customer businesses) and the API keys that authenticate them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, String
from sqlmodel import Column, Field, SQLModel

from gateway.db import UTCDateTime
from gateway.models.defaults import empty_dict, now


class AccountBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)


class Account(AccountBase, table=True):
    __tablename__ = "accounts"

    id: str = Field(primary_key=True, max_length=40)
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    # Compliance settings (see gateway.account_settings.ComplianceSettings), validated on use.
    compliance: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )
    # Signs the links the account's emails carry (unsubscribe); made on first use, never shown.
    link_secret: str | None = Field(default=None, max_length=64)


class KeyScope(StrEnum):
    """What a key may do: `full` everything, `read` only GET/HEAD, `compliance` only the opt-out
    ledger (list, record, export) and a phone's opt-out status; see gateway.auth.SCOPE_ROUTES."""

    FULL = "full"
    READ = "read"
    COMPLIANCE = "compliance"


class ApiKeyBase(SQLModel):
    name: str = Field(default="default", max_length=200)
    # Keys made before scopes existed could do everything: the column's default keeps them so.
    scope: KeyScope = Field(
        default=KeyScope.FULL,
        sa_column=Column(String(12), nullable=False, server_default=KeyScope.FULL.value),
    )


class ApiKey(ApiKeyBase, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=40)
    # A short visible prefix lets people tell keys apart; only the hash can authenticate.
    prefix: str = Field(max_length=20)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class ApiKeyPublic(ApiKeyBase):
    id: str
    account_id: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
