"""Keyset pagination by (created_at, id): stable under inserts, cheap at any depth."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlmodel import col
from sqlmodel.sql.expression import SelectOfScalar

from gateway.errors import ApiError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")


class Row(Protocol):
    id: str
    created_at: datetime


def page(
    statement: SelectOfScalar[T], model: Any, cursor: str | None, limit: int
) -> SelectOfScalar[T]:
    """`statement` after the cursor, in (created_at, id) order, at most `limit` rows.

    The cursor is opaque to clients: microseconds since the epoch and the last id, which
    contain no characters a query string would mangle.
    """
    created, row_id = col(model.created_at), col(model.id)
    if cursor is not None:
        micros, _, last_id = cursor.partition("~")
        try:
            after = EPOCH + timedelta(microseconds=int(micros))
        except (ValueError, OverflowError):
            raise ApiError(422, "invalid", "cursor: not a cursor from this API", "cursor") from None
        # The leading `created >= after` is implied by the rest; it is there so the database
        # can start the index scan at the cursor instead of filtering every earlier row.
        statement = statement.where((created >= after) & ((created > after) | (row_id > last_id)))
    return statement.order_by(created, row_id).limit(limit)


def next_cursor(rows: Sequence[Row], limit: int) -> str | None:
    """The cursor of the next page, or None when this page is the last."""
    if len(rows) < limit:
        return None
    last = rows[-1]
    return f"{(last.created_at - EPOCH) // timedelta(microseconds=1)}~{last.id}"
