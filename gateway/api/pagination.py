"""Keyset pagination by (a time, id): stable under inserts, cheap at any depth."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlmodel import col
from sqlmodel.sql.expression import SelectOfScalar

from gateway.errors import ApiError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")


def page(
    statement: SelectOfScalar[T],
    model: Any,
    cursor: str | None,
    limit: int,
    *,
    by: str = "created_at",
) -> SelectOfScalar[T]:
    """`statement` after the cursor, in (`by`, id) order, at most `limit` rows.

    The cursor is opaque to clients: microseconds since the epoch and the last id, which
    contain no characters a query string would mangle.
    """
    moment, row_id = col(getattr(model, by)), col(model.id)
    if cursor is not None:
        micros, _, last_id = cursor.partition("~")
        try:
            after = EPOCH + timedelta(microseconds=int(micros))
        except (ValueError, OverflowError):
            raise ApiError(422, "invalid", "cursor: not a cursor from this API", "cursor") from None
        # The leading `moment >= after` is implied by the rest; it is there so the database
        # can start the index scan at the cursor instead of filtering every earlier row.
        statement = statement.where((moment >= after) & ((moment > after) | (row_id > last_id)))
    return statement.order_by(moment, row_id).limit(limit)


def next_cursor(rows: Sequence[Any], limit: int, *, by: str = "created_at") -> str | None:
    """The cursor of the next page, or None when this page is the last."""
    if len(rows) < limit:
        return None
    last = rows[-1]
    moment: datetime | None = getattr(last, by)
    if moment is None:
        return None
    return f"{(moment - EPOCH) // timedelta(microseconds=1)}~{last.id}"
