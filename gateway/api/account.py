"""`GET /v1/account` (who am I) and `PATCH /v1/account` (name and compliance settings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.account_settings import ComplianceSettings, compliance_settings
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.models import Account
from gateway.models.accounts import AccountBase
from gateway.state import app_state, current_account, current_key

from .numbers import sync_sandbox_opt_out_handling
from .openapi import operation
from .requests import read_json, validation_error


class AccountUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    compliance: dict[str, Any] | None = Field(
        default=None, description="fields of the compliance settings to change"
    )


class ApiKeyRef(BaseModel):
    id: str
    prefix: str


class AccountPublic(AccountBase):
    """The account, its compliance settings, and the key the request used."""

    id: str
    created_at: datetime
    compliance: ComplianceSettings
    api_key: ApiKeyRef


def _public(request: Request, account: Account) -> AccountPublic:
    # The stored compliance settings hold only what was changed: the API shows them whole.
    return AccountPublic(
        id=account.id,
        name=account.name,
        created_at=account.created_at,
        compliance=compliance_settings(account),
        api_key=ApiKeyRef.model_validate(current_key(request), from_attributes=True),
    )


@operation("Who am I: the account of the API key", tags=["account"], response=AccountPublic)
async def get_account(request: Request) -> JSONResponse:
    return JSONResponse(_public(request, current_account(request)).model_dump(mode="json"))


@operation(
    "Change the account's name or compliance settings",
    tags=["account"],
    request=AccountUpdate,
    example={"name": "Acme Insurance", "compliance": {"timezone": "America/Chicago"}},
    response=AccountPublic,
)
async def update_account(request: Request) -> JSONResponse:
    update = await read_json(request, AccountUpdate)
    async with transaction(app_state(request)["sessions"]) as session:
        account = await session.get(Account, current_account(request).id)
        if account is None:  # deleted between authentication and now
            raise ApiError(404, "not_found", "account not found")
        if update.name is not None:
            account.name = update.name
        if update.compliance is not None:
            merged = {**(account.compliance or {}), **update.compliance}
            try:
                settings = ComplianceSettings.model_validate(merged)
            except ValidationError as exc:
                raise validation_error(exc, prefix=("compliance",)) from None
            account.compliance = settings.model_dump(mode="json", exclude_defaults=True)
        session.add(account)
    if update.compliance is not None and "twilio_answers_default_keywords" in update.compliance:
        # After the commit: the built-in sandbox (if it serves) stops or resumes answering
        # STOP, START and HELP on the account's numbers, as the account now says Twilio does.
        await sync_sandbox_opt_out_handling(app_state(request), account.id)
    return JSONResponse(_public(request, account).model_dump(mode="json"))


routes = [
    Route("/v1/account", get_account, methods=["GET"]),
    Route("/v1/account", update_account, methods=["PATCH"]),
]
