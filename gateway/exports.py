"""Ledger rows as JSON, CSV and JSON Lines, for the API and the CLI alike."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from gateway.optouts import LedgerRow

ExportFormat = Literal["csv", "jsonl"]

FIELDS = (
    "id",
    "account_id",
    "phone",
    "event",
    "received_at",
    "local_time",
    "channel",
    "source",
    "text",
    "rule",
    "keyword",
    "message_sid",
    "call_sid",
    "inbound_number",
    "actor",
    "note",
    "suppression_applied_at",
    "confirmation_sent_at",
    "confirmation_sid",
    "confirmation_body",
    "seconds_to_confirmation",
    "email",  # the address of an email opt-out (source unsubscribe_link); last, so old readers
    # of the CSV by position keep working
)
# Free text typed by a lead or a person: a spreadsheet would run "=HYPERLINK(...)" as a formula.
FREE_TEXT = frozenset({"text", "note", "actor", "confirmation_body", "email"})
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def as_dict(row: LedgerRow) -> dict[str, object]:
    """One ledger event with its confirmation, every field of the export."""
    event, confirmation = row.event, row.confirmation
    seconds = None
    if confirmation is not None:
        seconds = round((confirmation.sent_at - event.received_at).total_seconds(), 3)
    return {
        "id": event.id,
        "account_id": event.account_id,
        "phone": event.phone,
        "event": str(event.event),
        "received_at": _iso(event.received_at),
        "local_time": event.local_time,
        "channel": str(event.channel),
        "source": str(event.source),
        "text": event.text,
        "rule": event.rule,
        "keyword": event.keyword,
        "message_sid": event.message_sid,
        "call_sid": event.call_sid,
        "inbound_number": event.inbound_number,
        "actor": event.actor,
        "note": event.note,
        "suppression_applied_at": _iso(event.suppression_applied_at),
        "confirmation_sent_at": _iso(confirmation.sent_at) if confirmation else None,
        "confirmation_sid": confirmation.message_sid if confirmation else None,
        "confirmation_body": confirmation.body if confirmation else None,
        "seconds_to_confirmation": seconds,
        "email": event.email,
    }


def _csv_cell(name: str, value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if name in FREE_TEXT and text.startswith(FORMULA_START):
        return "'" + text
    return text


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


async def encode(rows: AsyncIterator[LedgerRow], fmt: ExportFormat) -> AsyncIterator[str]:
    """The export as text chunks: CSV with a header row, or one JSON object per line."""
    if fmt == "csv":
        yield _csv_line(list(FIELDS))
    async for row in rows:
        data = as_dict(row)
        if fmt == "csv":
            yield _csv_line([_csv_cell(name, data[name]) for name in FIELDS])
        else:
            yield json.dumps(data, ensure_ascii=False) + "\n"
