"""`/v1/emails`: the emails plays have sent, failed, been blocked from sending or (without an
SMTP server, as in the sandbox) captured: each with its full headers and body, so a developer
can see exactly what a lead would have received."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.errors import ApiError
from gateway.models import Email, EmailStatus
from gateway.state import app_state, current_account

from .openapi import operation
from .pagination import next_cursor, page
from .requests import read_query

TAGS = ["emails"]


class EmailQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(default=None, max_length=40)
    play_id: str | None = Field(default=None, max_length=40)
    status: EmailStatus | None = None
    cursor: str | None = Field(default=None, max_length=80)
    limit: int = Field(default=50, ge=1, le=200)


class EmailPublic(BaseModel):
    # Read from the row (`to_address`, `from_address`); `from` is a Python keyword.
    model_config = ConfigDict(serialize_by_alias=True)

    id: str
    lead_id: str
    play_id: str | None
    step_id: str | None
    rep_id: str | None = Field(
        default=None, description="a notice to this rep about the lead; null: to the lead"
    )
    to: str = Field(validation_alias="to_address")
    from_: str | None = Field(
        validation_alias="from_address",
        serialization_alias="from",
        description="null until it leaves: then the step's, playbook's or default",
    )
    reply_to: str | None
    subject: str
    body: str
    status: EmailStatus = Field(
        description="queued, sending, sent, failed, blocked (the gate: opted out) or captured "
        "(no SMTP_URL: stored here, not sent)"
    )
    message_id: str | None = Field(description="the Message-ID header")
    error: str | None
    smtp_code: int | None
    gate_reason: str | None
    attempts: int
    send_after: datetime | None = Field(description="a retry waits until then")
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


class EmailList(BaseModel):
    data: list[EmailPublic]
    next_cursor: str | None


@operation(
    "List emails",
    tags=TAGS,
    description="Oldest first; filter by lead, play or status. Without an SMTP server (the "
    "sandbox) every email the gate allows is `captured` and shown here in full.",
    query=EmailQuery,
    response=EmailList,
)
async def list_emails(request: Request) -> JSONResponse:
    query = read_query(request, EmailQuery)
    statement = select(Email).where(Email.account_id == current_account(request).id)
    if query.lead_id is not None:
        statement = statement.where(Email.lead_id == query.lead_id)
    if query.play_id is not None:
        statement = statement.where(Email.play_id == query.play_id)
    if query.status is not None:
        statement = statement.where(Email.status == query.status)
    statement = page(statement, Email, query.cursor, query.limit)
    async with app_state(request)["sessions"]() as session:
        emails = list((await session.exec(statement)).all())
    listed = EmailList(
        data=[EmailPublic.model_validate(e, from_attributes=True) for e in emails],
        next_cursor=next_cursor(emails, query.limit),
    )
    return JSONResponse(listed.model_dump(mode="json"))


@operation("Get an email", tags=TAGS, response=EmailPublic)
async def get_email(request: Request) -> JSONResponse:
    async with app_state(request)["sessions"]() as session:
        email = (
            await session.exec(
                select(Email).where(
                    Email.id == request.path_params["email_id"],
                    Email.account_id == current_account(request).id,
                )
            )
        ).first()
    if email is None:
        raise ApiError(404, "not_found", "no such email")
    return JSONResponse(
        EmailPublic.model_validate(email, from_attributes=True).model_dump(mode="json")
    )


routes = [
    Route("/v1/emails", list_emails, methods=["GET"]),
    Route("/v1/emails/{email_id}", get_email, methods=["GET"]),
]
