"""The inbox: `GET /v1/plays?awaiting=human`, the running plays waiting for a person (see
gateway/engine/handover.py), oldest wait first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlmodel import col
from sqlmodel.sql.expression import SelectOfScalar

from gateway.errors import ApiError
from gateway.models import Play, PlayState

from .pagination import EPOCH


def inbox_page(
    statement: SelectOfScalar[Play], cursor: str | None, limit: int
) -> SelectOfScalar[Play]:
    """Running plays waiting for a person, oldest wait first, keyset-paged by
    (awaiting_human_since, id) on `ix_plays_awaiting_human`."""
    since, row_id = col(Play.awaiting_human_since), col(Play.id)
    statement = statement.where(since.is_not(None), Play.state == PlayState.RUNNING)
    if cursor is not None:
        micros, _, last_id = cursor.partition("~")
        try:
            after = EPOCH + timedelta(microseconds=int(micros))
        except (ValueError, OverflowError):
            raise ApiError(422, "invalid", "cursor: not a cursor from this API", "cursor") from None
        statement = statement.where((since >= after) & ((since > after) | (row_id > last_id)))
    return statement.order_by(since, row_id).limit(limit)


def inbox_cursor(plays: Sequence[Play], limit: int) -> str | None:
    """The cursor of the inbox's next page, or None when this page is the last."""
    last = plays[-1] if len(plays) >= limit else None
    if last is None or last.awaiting_human_since is None:
        return None
    return f"{(last.awaiting_human_since - EPOCH) // timedelta(microseconds=1)}~{last.id}"
