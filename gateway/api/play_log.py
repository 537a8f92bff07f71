"""`GET /v1/plays/{id}/log`: everything that happened in a play, in order (steps, messages,
replies, gate decisions, state changes), for support and for the business's own audit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.errors import ApiError
from gateway.models import Message, Play, PlayLog
from gateway.state import app_state, current_account

from .openapi import operation
from .requests import read_query


class PlayLogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(
        default=None, ge=0, description="the `next_after` of the previous page"
    )
    limit: int = Field(default=100, ge=1, le=500)


class PlayLogPublic(BaseModel):
    id: int = Field(description="increasing within the play")
    at: datetime
    kind: str = Field(
        description="step; message (an outbound text: `body` as sent, with any opt-out notice, "
        "`status`, `to`, `sent_at`); reply (the lead's text: `body`); allowed, deferred "
        "(`until`) and blocked: the gate's decision on a text or call (`reason`); activity; "
        "state; ..."
    )
    step_id: str | None
    detail: dict[str, Any]


class PlayLogPage(BaseModel):
    data: list[PlayLogPublic]
    next_after: int | None = Field(description="pass as `after` for the next page; null: done")


@operation(
    "Read a play's log",
    tags=["plays"],
    description="What the play did, oldest first: steps taken, every outbound text with its "
    "body as sent, every reply of the lead with its body, every compliance-gate decision "
    "(allowed, deferred until a time, blocked, a contact without consent evidence), state "
    "changes with their reason.",
    query=PlayLogQuery,
    response=PlayLogPage,
)
async def get_play_log(request: Request) -> JSONResponse:
    query = read_query(request, PlayLogQuery)
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        play = (
            await session.exec(
                select(Play.id).where(
                    Play.account_id == account_id, Play.id == request.path_params["play_id"]
                )
            )
        ).first()
        if play is None:
            raise ApiError(404, "not_found", "no such play")
        statement = select(PlayLog).where(PlayLog.play_id == play)
        if query.after is not None:
            statement = statement.where(col(PlayLog.id) > query.after)
        rows = (await session.exec(statement.order_by(col(PlayLog.id)).limit(query.limit))).all()
        texts = await _texts(session, account_id, rows)
    data = [
        PlayLogPublic(
            id=row.id or 0,
            at=row.at,
            kind=row.kind,
            step_id=row.step_id,
            detail=_detail(row, texts),
        ).model_dump(mode="json")
        for row in rows
    ]
    next_after = rows[-1].id if len(rows) == query.limit else None
    return JSONResponse({"data": data, "next_after": next_after})


async def _texts(
    session: AsyncSession, account_id: str, rows: Sequence[PlayLog]
) -> dict[str, Message]:
    """The outbound texts the page's `message` entries name, in one query."""
    ids = [
        str(row.detail["message_id"])
        for row in rows
        if row.kind == "message" and row.detail.get("message_id")
    ]
    if not ids:
        return {}
    query = select(Message).where(Message.account_id == account_id, col(Message.id).in_(ids))
    return {message.id: message for message in (await session.exec(query)).all()}


def _detail(row: PlayLog, texts: dict[str, Message]) -> dict[str, Any]:
    """The entry's detail, with what the API adds: a text's body and status, a reply's body."""
    detail = dict(row.detail)
    if row.kind == "message":
        message = texts.get(str(detail.get("message_id")))
        if message is not None:
            # The body as sent: the claim wrote the opt-out notice into it, if one was added.
            detail.update(
                body=message.body,
                status=str(message.status),
                to=message.lead_phone,
                sent_at=message.sent_at.isoformat() if message.sent_at else None,
            )
    elif row.kind == "reply" and "body" not in detail:
        detail["body"] = detail.get("text")
    return detail


routes = [Route("/v1/plays/{play_id}/log", get_play_log, methods=["GET"])]
