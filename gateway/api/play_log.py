"""`GET /v1/plays/{id}/log`: everything that happened in a play, in order (steps, messages,
replies, gate decisions, state changes), for support and for the business's own audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.errors import ApiError
from gateway.models import Play, PlayLog
from gateway.state import app_state, current_account

from .openapi import operation
from .requests import read_query


class PlayLogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(
        default=None, ge=0, description="the `next_after` of the previous page"
    )
    limit: int = Field(default=100, ge=1, le=500)


class PlayLogEntry(BaseModel):
    id: int = Field(description="increasing within the play")
    at: datetime
    kind: str = Field(description="step, message, reply, activity, blocked, state, ...")
    step_id: str | None
    detail: dict[str, Any]


class PlayLogPage(BaseModel):
    data: list[PlayLogEntry]
    next_after: int | None = Field(description="pass as `after` for the next page; null: done")


@operation(
    "Read a play's log",
    tags=["plays"],
    description="What the play did, oldest first: steps taken, texts queued, replies matched, "
    "compliance-gate decisions (a consent block, a contact without consent evidence), state "
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
    data = [
        PlayLogEntry(
            id=row.id or 0, at=row.at, kind=row.kind, step_id=row.step_id, detail=row.detail
        ).model_dump(mode="json")
        for row in rows
    ]
    next_after = rows[-1].id if len(rows) == query.limit else None
    return JSONResponse({"data": data, "next_after": next_after})


routes = [Route("/v1/plays/{play_id}/log", get_play_log, methods=["GET"])]
