"""Migration 0015 on existing data: texts already stuck without a final status (callbacks lost
before the status checks existed) are due for a check at once, if their last change is within
the checks' bound; nothing else is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gateway.db import UTCDateTime, create_engine
from gateway.migrate import upgrade
from tests.conftest import TEST_DATABASE_URL
from tests.support.databases import create_database, drop_database

MESSAGES = sa.table(
    "messages",
    sa.column("id", sa.String()),
    sa.column("account_id", sa.String()),
    sa.column("lead_phone", sa.String()),
    sa.column("direction", sa.String()),
    sa.column("body", sa.String()),
    sa.column("media", sa.JSON()),
    sa.column("purpose", sa.String()),
    sa.column("reason", sa.String()),
    sa.column("status", sa.String()),
    sa.column("twilio_sid", sa.String()),
    sa.column("attempts", sa.Integer()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
# id: (direction, status, has a SID, hours since the last change)
ROWS = {
    "msg_accepted": ("outbound", "accepted", True, 1),
    "msg_sent": ("outbound", "sent", True, 50),
    "msg_too_old": ("outbound", "sent", True, 96),
    "msg_delivered": ("outbound", "delivered", True, 1),
    "msg_queued": ("outbound", "queued", False, 1),
    "msg_inbound": ("inbound", "received", True, 1),
}


async def _seed(url: str) -> None:
    engine = create_engine(url)
    moment = datetime.now(UTC)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES ('acc', 'A', :at)"),
                {"at": moment},
            )
            for n, (message_id, (direction, status, has_sid, hours)) in enumerate(ROWS.items()):
                changed = moment - timedelta(hours=hours)
                await connection.execute(
                    MESSAGES.insert().values(
                        id=message_id,
                        account_id="acc",
                        lead_phone="+14155550123",
                        direction=direction,
                        body="Hi",
                        media=[],
                        purpose="initiated",
                        reason="manual",
                        status=status,
                        twilio_sid=f"SM{n:032d}" if has_sid else None,
                        attempts=1,
                        created_at=changed,
                        updated_at=changed,
                    )
                )
    finally:
        await engine.dispose()


async def _due(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text("SELECT id FROM messages WHERE status_check_at IS NOT NULL")
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


def test_texts_stuck_before_the_upgrade_are_checked(tmp_path: Path) -> None:
    url = asyncio.run(create_database(TEST_DATABASE_URL, tmp_path))
    try:
        upgrade(url, "0014")
        asyncio.run(_seed(url))
        upgrade(url)
        due = asyncio.run(_due(url))
    finally:
        asyncio.run(drop_database(TEST_DATABASE_URL, url))
    assert due == {"msg_accepted", "msg_sent"}
