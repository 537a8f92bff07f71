"""Export memory: stream N opt-out ledger events through the CSV export and watch the heap.

Usage:
    .venv/bin/python bench/export_memory.py --events 1000000 [--database-url postgresql://...]

Inserts N events for one account (bulk, outside the API), then streams the export twice
through the same code the API uses (`optouts.iterate` + `exports.encode`), discarding
the text, and prints one line per figure: rows exported, seconds, rows/s, the traced heap peak
(tracemalloc) and the process's max RSS. Constant memory means the peak does not grow with N:
compare --events 100000 and --events 1000000.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from gateway import accounts, optouts
from gateway.db import create_engine, session_factory, transaction
from gateway.exports import encode
from gateway.migrate import upgrade_async
from gateway.models import OptOutEvent

BATCH = 10_000


async def fill(database_url: str, events: int) -> str:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        account, _ = await accounts.create_account(session, "Bench")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for offset in range(0, events, BATCH):
        rows = [
            {
                "account_id": account.id,
                "phone": f"+1415{(offset + i) % 10_000_000:07d}",
                "event": "opt_out",
                "received_at": start + timedelta(seconds=offset + i),
                "local_time": "",
                "channel": "sms",
                "source": "keyword",
                "text": "STOP",
                "suppression_applied_at": start + timedelta(seconds=offset + i),
            }
            for i in range(min(BATCH, events - offset))
        ]
        async with engine.begin() as connection:
            await connection.execute(insert(OptOutEvent), rows)
    await engine.dispose()
    return account.id


async def export(database_url: str, account_id: str) -> tuple[int, float]:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    count = size = 0
    started = time.perf_counter()
    rows = optouts.iterate(sessions, account_id, optouts.LedgerFilter())
    async for chunk in encode(rows, "csv"):
        size += len(chunk)  # what a client would read; nothing is kept
        count += 1
    elapsed = time.perf_counter() - started
    await engine.dispose()
    print(f"export bytes={size}")
    return count - 1, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    url = args.database_url or f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    await upgrade_async(url)
    account_id = await fill(url, args.events)
    tracemalloc.start()
    rows, seconds = await export(url, account_id)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"export rows={rows} seconds={seconds:.1f} rows_per_s={rows / seconds:.0f}")
    print(f"export heap_peak_mb={peak / 2**20:.1f} max_rss_mb={max_rss_mb:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
