"""Scale: a million leads and plays in PostgreSQL; the due-work sweeps and `GET /v1/plays` stay
fast (their plans use indexes), and the web and worker processes keep flat memory under load.

Usage:
    .venv/bin/python bench/scale.py --leads 1000000 --soak-seconds 600
    .venv/bin/python bench/scale.py --leads 100000 --soak-seconds 120      # a quick run

Phases (all by default; `--phases` picks some, `--reuse` keeps an already seeded database):
1. seed: a fresh database (`--database`, dropped at the end unless `--keep`), migrated with
   `gateway.migrate`; account A with `--leads` leads and plays and account B with a tenth of
   that (see bench/scale_seed.py for the spread), then VACUUM ANALYZE.
2. queries: every sweep in `gateway.worker.SWEEPS` and the query behind `GET /v1/plays` (with
   its filters and a deep cursor) is run once while its SQL is captured, then each captured
   statement is timed (`--runs`, median, warm, through asyncpg's prepared statements as the
   app runs them) and explained with `EXPLAIN (ANALYZE, BUFFERS)`; a Seq Scan on a big table
   is flagged. The whole sweep call (SQL plus its Redis enqueues) is timed too.
3. http: `gateway web` under uvicorn on 127.0.0.1; `--requests` sequential `GET /v1/plays`
   requests per variant; p50/p99.
4. soak: the sandbox (own process), `gateway web` and `gateway worker` on the big database,
   steady load for `--soak-seconds` (see bench/scale_soak.py); RSS of web and worker sampled
   every `--sample-seconds`: start, end, max, slope.

Each figure is one `RESULT` line. Redis: database 4 of `--redis-url` (flushed with FLUSHDB
before the http and soak phases; nothing else is touched).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from arq import create_pool
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import accounts
from gateway.api.pagination import next_cursor
from gateway.api.plays import PlayQuery, list_statement
from gateway.db import create_engine, session_factory, transaction
from gateway.job_context import as_ctx
from gateway.migrate import upgrade_async
from gateway.models import Play
from gateway.settings import load_settings
from gateway.worker import SWEEPS, build_job_context, close_job_context, redis_settings

# `python bench/scale.py` (this directory on sys.path) or `python -m bench.scale` (a package).
if __package__:
    from bench import scale_soak
    from bench.scale_seed import analyze, seed_account
else:
    import scale_soak
    from scale_seed import analyze, seed_account

BIG_TABLES = (
    "leads",
    "plays",
    "messages",
    "activities",
    "webhook_deliveries",
    "emails",
    "party_lines",
)
GOAL_MS = 50.0


def result(line: str) -> None:
    print(f"RESULT {line}", flush=True)


# -- database -------------------------------------------------------------------------------


def database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def recreate_database(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    engine = create_engine(admin_url)
    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if not drop_only:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


@dataclass
class Seeded:
    account_a: str
    key_a: str
    account_b: str
    key_b: str


async def seed(url: str, leads: int) -> Seeded:
    started = time.perf_counter()
    await upgrade_async(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        account_a, issued_a = await accounts.create_account(session, "Scale A")
        account_b, issued_b = await accounts.create_account(session, "Scale B")
    moment = datetime.now(UTC)
    print(f"seeding account A ({leads} leads)", flush=True)
    times_a = await seed_account(engine, account_a.id, leads, moment, "a", drips=0.01)
    print(f"seeding account B ({leads // 10} leads)", flush=True)
    times_b = await seed_account(engine, account_b.id, leads // 10, moment, "b", drips=0.0)
    analyze_started = time.perf_counter()
    await analyze(engine)
    async with engine.connect() as connection:
        size = (
            await connection.execute(text("SELECT pg_database_size(current_database())"))
        ).scalar_one()
    await engine.dispose()
    total = time.perf_counter() - started
    rows = {name: times_a.rows[name] + times_b.rows[name] for name in times_a.rows}
    result(
        f"seed leads={rows['leads']} plays={rows['plays']} "
        f"messages={rows['outbound messages'] + rows['inbound messages']} "
        f"activities={rows['activities']} deliveries={rows['webhook deliveries']} "
        f"emails={rows['emails']} party_lines={rows['party lines']} "
        f"seconds={total:.0f} (analyze {time.perf_counter() - analyze_started:.0f}) "
        f"size_mb={size / 1e6:.0f}"
    )
    return Seeded(account_a.id, issued_a.secret, account_b.id, issued_b.secret)


async def load_seeded(url: str) -> Seeded:
    """The accounts of an already seeded database, with fresh API keys."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        found = (
            await session.exec(
                text("SELECT id, name FROM accounts WHERE name IN ('Scale A', 'Scale B')")
            )
        ).all()
        by_name = {name: account_id for account_id, name in found}
        key_a = await accounts.create_key(session, by_name["Scale A"], "bench")
        key_b = await accounts.create_key(session, by_name["Scale B"], "bench")
    await engine.dispose()
    return Seeded(by_name["Scale A"], key_a.secret, by_name["Scale B"], key_b.secret)


# -- captured statements, timed and explained ----------------------------------------------


@dataclass
class Statement:
    sql: str
    params: Any


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[Statement]]:
    """Every statement the engine sends while the block runs, with its parameters."""
    statements: list[Statement] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, _context: Any, _many: bool) -> None:
        statements.append(Statement(sql, params))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@dataclass
class Timed:
    name: str
    statement: Statement
    times_ms: list[float] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    def seq_scans(self) -> list[str]:
        pattern = re.compile(r"Seq Scan on (\w+)")
        return [
            m.group(1)
            for line in self.plan
            if (m := pattern.search(line)) and m.group(1) in BIG_TABLES
        ]


async def time_statement(engine: AsyncEngine, timed: Timed, runs: int) -> None:
    """Median of `runs` warm executions, then the plan (in a transaction rolled back, since
    EXPLAIN ANALYZE of an UPDATE really updates)."""
    async with engine.connect() as connection:
        for _ in range(runs + 1):  # the first run warms the cache and the prepared statement
            started = time.perf_counter()
            outcome = await connection.exec_driver_sql(timed.statement.sql, timed.statement.params)
            if outcome.returns_rows:
                outcome.fetchall()
            timed.times_ms.append((time.perf_counter() - started) * 1000)
        await connection.rollback()
        timed.times_ms.pop(0)
        explain = "EXPLAIN (ANALYZE, BUFFERS) " + timed.statement.sql
        outcome = await connection.exec_driver_sql(explain, timed.statement.params)
        timed.plan = [row[0] for row in outcome.fetchall()]
        await connection.rollback()


def report_statement(timed: Timed) -> None:
    scans = timed.seq_scans()
    verdict = "ok" if timed.median_ms < GOAL_MS and not scans else "SLOW"
    result(
        f"query {timed.name}: median {timed.median_ms:.2f} ms of {len(timed.times_ms)} "
        f"(goal < {GOAL_MS:.0f} ms) seq_scans_on_big_tables={scans or 'none'} {verdict}"
    )
    print(f"--- plan: {timed.name}\n--- sql: {' '.join(timed.statement.sql.split())}")
    print("\n".join("    " + line for line in timed.plan), flush=True)


async def time_call(call: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    await call()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def sweep_queries(url: str, redis_url: str, runs: int) -> list[Timed]:
    """Every periodic sweep of the worker: its SQL timed and explained, and the whole call."""
    engine = create_engine(url)
    redis = await create_pool(redis_settings(redis_url))
    # The sweeps ask Twilio nothing; fixed credentials keep the sandbox's out of DATA_DIR.
    settings = load_settings(
        database_url=url,
        redis_url=redis_url,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="unused",
    )
    jc = build_job_context(settings, session_factory(engine), redis)
    ctx = as_ctx(jc)
    timed: list[Timed] = []
    try:
        for name, sweep, _offset in SWEEPS:
            with captured(engine) as statements:
                await sweep(ctx)
            for number, statement in enumerate(statements, 1):
                label = name if len(statements) == 1 else f"{name}#{number}"
                timed.append(Timed(label, statement))
            calls = await time_call(lambda sweep=sweep: sweep(ctx), runs)
            result(
                f"sweep call {name} (SQL + Redis enqueues of what is due): "
                f"median {statistics.median(calls):.1f} ms of {runs}"
            )
        for entry in timed:
            await time_statement(engine, entry, runs)
            report_statement(entry)
    finally:
        await close_job_context(jc)
        await redis.aclose()
        await engine.dispose()
    return timed


async def play_list_variants(
    url: str, seeded: Seeded
) -> list[tuple[str, str, PlayQuery, dict[str, str]]]:
    """(name, account, query, HTTP params) for the `GET /v1/plays` shapes clients use."""
    engine = create_engine(url)
    async with engine.connect() as connection:
        total = (
            await connection.execute(
                text("SELECT count(*) FROM plays WHERE account_id = :a"), {"a": seeded.account_a}
            )
        ).scalar_one()
        middle = (
            await connection.execute(
                text(
                    "SELECT created_at, id FROM plays WHERE account_id = :a "
                    "ORDER BY created_at, id OFFSET :o LIMIT 1"
                ),
                {"a": seeded.account_a, "o": total // 2},
            )
        ).one()
        lead_id = (
            await connection.execute(
                text("SELECT lead_id FROM plays WHERE account_id = :a ORDER BY id LIMIT 1"),
                {"a": seeded.account_a},
            )
        ).scalar_one()
    await engine.dispose()

    class Row:
        def __init__(self, created_at: datetime, row_id: str) -> None:
            self.created_at, self.id = created_at, row_id

    cursor = next_cursor([Row(middle[0], middle[1])], 1)
    assert cursor is not None
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    a, b = seeded.account_a, seeded.account_b
    shapes: list[tuple[str, str, dict[str, Any]]] = [
        ("first page", a, {}),
        ("deep cursor (middle)", a, {"cursor": cursor}),
        ("state=running", a, {"state": "running"}),
        ("state=opted_out deep", a, {"state": "opted_out", "cursor": cursor}),
        ("playbook_id=insurance-xdate (recent)", a, {"playbook_id": "insurance-xdate"}),
        ("lead_id", a, {"lead_id": lead_id}),
        ("since=1 day", a, {"since": since}),
        ("limit=200", a, {"limit": 200}),
        ("account B first page", b, {}),
        ("account B state=running (no long drips)", b, {"state": "running"}),
    ]
    return [
        (name, account, PlayQuery.model_validate(params), {k: str(v) for k, v in params.items()})
        for name, account, params in shapes
    ]


async def list_queries(
    url: str, variants: list[tuple[str, str, PlayQuery, dict[str, str]]], runs: int
) -> list[Timed]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    timed: list[Timed] = []
    try:
        for name, account_id, query, _params in variants:
            with captured(engine) as statements:
                async with sessions() as session:
                    found = list((await session.exec(list_statement(account_id, query))).all())
            assert found and all(isinstance(p, Play) for p in found), name
            [statement] = statements
            entry = Timed(f"GET /v1/plays {name}", statement)
            await time_statement(engine, entry, runs)
            report_statement(entry)
            timed.append(entry)
    finally:
        await engine.dispose()
    return timed


# -- over HTTP and the soak ------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def flush_redis(redis_url: str) -> None:
    """Empty our own Redis database (the queries phase's sweeps left jobs there)."""
    redis = await create_pool(redis_settings(redis_url))
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


async def http_lists(url: str, seeded: Seeded, args: argparse.Namespace) -> None:
    """`GET /v1/plays` through `gateway web` under uvicorn: sequential requests, p50/p99."""
    variants = await play_list_variants(url, seeded)
    requests: int = args.requests
    await flush_redis(args.redis_url)
    stack = await scale_soak.start_web(url, args.redis_url, args.logs)
    keys = {seeded.account_a: seeded.key_a, seeded.account_b: seeded.key_b}
    try:
        async with httpx.AsyncClient(base_url=stack.base, timeout=30) as client:
            for name, account_id, _query, params in variants:
                headers = {"Authorization": keys[account_id]}
                for _ in range(5):  # warm the connection pool and prepared statements
                    (
                        await client.get("/v1/plays", params=params, headers=headers)
                    ).raise_for_status()
                times = []
                for _ in range(requests):
                    started = time.perf_counter()
                    answer = await client.get("/v1/plays", params=params, headers=headers)
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                result(
                    f"http GET /v1/plays {name}: p50 {percentile(times, 50):.1f} ms "
                    f"p99 {percentile(times, 99):.1f} ms of {requests} sequential requests "
                    f"({len(answer.json()['data'])} plays per page)"
                )
    finally:
        scale_soak.stop(stack)


async def soak_memory(url: str, redis_url: str, seeded: Seeded, args: argparse.Namespace) -> None:
    await flush_redis(redis_url)
    began = datetime.now(UTC)
    samples, load = await scale_soak.soak(
        url,
        redis_url,
        [(seeded.account_a, seeded.key_a), (seeded.account_b, seeded.key_b)],
        seconds=args.soak_seconds,
        rate=args.soak_rate,
        every=args.sample_seconds,
        logs=args.logs,
    )
    warm = [i for i, at in enumerate(samples.at) if at >= min(60.0, args.soak_seconds / 5)]
    for name, mb in samples.mb.items():
        tail_at = [samples.at[i] for i in warm]
        tail_mb = [mb[i] for i in warm]
        result(
            f"memory {name}: rss start {mb[0]:.1f} MB, after warm-up {tail_mb[0]:.1f} MB, "
            f"end {mb[-1]:.1f} MB, max {max(mb):.1f} MB; slope after warm-up "
            f"{scale_soak.slope_mb_per_min(tail_at, tail_mb):+.2f} MB/min "
            f"(whole run {scale_soak.slope_mb_per_min(samples.at, mb):+.2f} MB/min), "
            f"{len(mb)} samples over {samples.at[-1]:.0f} s"
        )
    print("rss samples (s, " + ", ".join(samples.mb) + "):")
    for i, at in enumerate(samples.at):
        print(f"  {at:6.0f} " + " ".join(f"{mb[i]:7.1f}" for mb in samples.mb.values()))
    result(
        f"soak load: {dict(sorted(load.statuses.items()))}, webhooks received "
        f"{load.webhooks_received}; POST /v1/plays p50 {percentile(load.create_ms, 50):.1f} ms "
        f"p99 {percentile(load.create_ms, 99):.1f} ms; GET /v1/plays?state=running p50 "
        f"{percentile(load.list_ms, 50):.1f} ms p99 {percentile(load.list_ms, 99):.1f} ms"
    )
    await soak_work(url, began)


async def soak_work(url: str, began: datetime) -> None:
    """What the soak made the service do, from the database (the load was real work)."""
    engine = create_engine(url)
    async with engine.connect() as connection:
        plays = (
            await connection.execute(
                text("SELECT state, count(*) FROM plays WHERE created_at >= :t GROUP BY state"),
                {"t": began},
            )
        ).all()
        messages = (
            await connection.execute(
                text(
                    "SELECT direction, status, count(*) FROM messages WHERE created_at >= :t "
                    "GROUP BY direction, status"
                ),
                {"t": began},
            )
        ).all()
        deliveries = (
            await connection.execute(
                text(
                    "SELECT status, count(*) FROM webhook_deliveries WHERE created_at >= :t "
                    "GROUP BY status"
                ),
                {"t": began},
            )
        ).all()
    await engine.dispose()
    result(
        f"soak work: plays {dict(sorted((str(k), v) for k, v in plays))}; messages "
        f"{dict(sorted((f'{d} {st}', v) for d, st, v in messages))}; webhook deliveries "
        f"{dict(sorted((str(k), v) for k, v in deliveries))}"
    )


# -- main -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    url = database_url(args.admin_url, args.database)
    phases = set(args.phases.split(","))
    if args.reuse:
        seeded = await load_seeded(url)
    else:
        await recreate_database(args.admin_url, args.database)
        seeded = await seed(url, args.leads)
    if "queries" in phases:
        await sweep_queries(url, args.redis_url, args.runs)
        variants = await play_list_variants(url, seeded)
        await list_queries(url, variants, args.runs)
    if "http" in phases:
        await http_lists(url, seeded, args)
    if "soak" in phases:
        await soak_memory(url, args.redis_url, seeded, args)
    if not args.keep:
        await recreate_database(args.admin_url, args.database, drop_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000, help="leads of account A")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="gw_scale", help="created, dropped at the end")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per query (median)")
    parser.add_argument("--requests", type=int, default=300, help="HTTP requests per variant")
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=1,
        help="plays started per second (steady: the worker keeps up)",
    )
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/gw-scale"), help="process logs")
    parser.add_argument("--phases", default="queries,http,soak")
    parser.add_argument("--reuse", action="store_true", help="use the seeded database as is")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3 (medians of at least 3 runs)")
    args.logs.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
