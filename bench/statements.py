"""Statements per unit: the SQL statements and transactions each unit of work costs.

    .venv/bin/python -m bench.statements [--leads 20] [--database-url postgresql://...]
                                         [--show "job sms.send"]

Everything in this one process, so every statement can be attributed: the gateway app with its
built-in sandbox served by uvicorn on 127.0.0.1 (the sandbox's status callbacks and inbound
texts reach the app over HTTP, as Twilio's would), a webhook receiver the account subscribes
to, and an arq worker run in bursts (no cron: the sweeps are not per-lead work). Inline jobs
run as deployed: a new lead's first text is sent by the process that took its `POST`, and its
statements are the `POST`'s (`--inline-jobs 0` sends every job through the worker instead,
each counted by its name). Each lead is
started with `POST /v1/plays` on the example playbook `examples/mortgage-qualification.yaml`;
the worker runs until nothing is left (its first text, the status callbacks, the webhook
deliveries); then each lead replies "yes" and the worker runs again; then the clock moves a
day on, past the playbook's `reengagement.after`, and the worker runs again, beginning with the
sweep, which finds each play's re-engagement text due (timed work, as a drip's next step). The
gateway's clock (in this process) is set to noon in Los Angeles and the leads are Los Angeles
numbers, so the gate lets every text go whatever the hour of the run.

A statement is anything the database driver is asked to execute (a BEGIN that SQLAlchemy sends
as a statement is left out, so both backends count alike); a transaction is a COMMIT or a
ROLLBACK of one the server had open (reads in autocommit, as an API key's lookup, are none).
Each is attributed to the web request (method and route, ids folded) or the job (by name) that
sent it. Printed: per unit, its occurrences and statements and transactions per occurrence;
then per lead, the first text (`POST /v1/plays` with what its process sent inline, and any
`plays.advance` or `sms.send` job) and everything; and the CPU this one process spent per new
lead, per reply and per play come due, to compare builds run one after the other. Counts do
not depend on the machine's load; the goal of issue 14 is a play's first text in at most 8
statements and 2 transactions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import re
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Receive, Scope, Send

from bench import support
from bench.bare import receiver_app
from gateway import clock
from gateway.app import create_app
from gateway.settings import SANDBOX_PATH, Settings, load_settings
from gateway.sqlite_driver import OneTripConnection
from gateway.work.sweep import SWEEP_JOB
from gateway.worker import build_worker

ROUNDS = 20  # worker bursts per phase, at most: each ends when its queue is empty
DAY = timedelta(days=1, seconds=1)  # past the example playbook's `reengagement.after`
FIRST_TEXT = ("POST /v1/plays", "job plays.advance", "job sms.send", "job sms.sends")

UNIT: contextvars.ContextVar[str] = contextvars.ContextVar("unit", default="(setup)")
# Which occurrence of its unit the current request or job is (1 for the first).
OCCURRENCE: contextvars.ContextVar[int] = contextvars.ContextVar("occurrence", default=0)
SHOW: list[str] = []  # --show: the unit whose first occurrence's statements are printed
SHOWN: list[str] = []
# --plans: each distinct statement (SQLite), with the first unit that sent it and its parameters
SEEN: dict[str, tuple[str, Any]] = {}
_ID = re.compile(r"/(?:[a-z]+_[0-9a-f]{8,}|\+?\d{6,}|[0-9a-f-]{16,})(?=/|$)")


@dataclasses.dataclass
class Counts:
    occurrences: Counter[str] = dataclasses.field(default_factory=Counter)
    statements: Counter[str] = dataclasses.field(default_factory=Counter)
    transactions: Counter[str] = dataclasses.field(default_factory=Counter)

    def taken(self) -> Counts:
        """What was counted so far, and a fresh start."""
        kept = Counts(
            Counter(self.occurrences), Counter(self.statements), Counter(self.transactions)
        )
        for counter in (self.occurrences, self.statements, self.transactions):
            counter.clear()
        return kept


COUNTS = Counts()


def _statement(_c: Any, _cursor: Any, sql: str, params: Any, _x: Any, many: bool) -> None:
    if not sql.lstrip().upper().startswith("BEGIN"):
        COUNTS.statements[UNIT.get()] += 1
        SEEN.setdefault(sql, (UNIT.get(), params[0] if many else params))
        if UNIT.get() in SHOW and OCCURRENCE.get() == 1:
            SHOWN.append(" ".join(sql.split()))


def _transaction_end(connection: Any) -> None:
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return  # SQLAlchemy's own bookkeeping: no transaction began or ended on the server
    driver = connection.connection.dbapi_connection
    if isinstance(driver, OneTripConnection) and not driver.in_transaction:
        return  # nor on SQLite, where no BEGIN was said (`gateway.db.read_alone`)
    COUNTS.transactions[UNIT.get()] += 1
    if UNIT.get() in SHOW and OCCURRENCE.get() == 1:
        SHOWN.append("-- end of transaction")


def _begin(name: str) -> None:
    """The current task is one occurrence of unit `name`."""
    UNIT.set(name)
    COUNTS.occurrences[name] += 1
    OCCURRENCE.set(COUNTS.occurrences[name])


def counted_app(app: ASGIApp) -> ASGIApp:
    """The app, with each HTTP request counted as one occurrence of its unit."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SANDBOX_PATH):
            await app(scope, receive, send)
            return
        # This request's own task: the context is its own.
        _begin(f"{scope['method']} {_ID.sub('/{id}', scope['path'])}")
        await app(scope, receive, send)

    return wrapped


def counted_job(name: str, coroutine: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def wrapped(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        _begin(f"job {name}")
        return await coroutine(ctx, *args, **kwargs)

    return wrapped


@contextlib.asynccontextmanager
async def served(app: ASGIApp, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def work(
    settings: Settings, redis_url: str, sandbox: httpx.AsyncClient, *, sweep: bool = False
) -> None:
    """Run the worker in bursts, letting the sandbox deliver what it owes between them, until a
    burst finds nothing to do. `sweep`: the first burst begins with the sweep (`work.sweep`),
    which finds the work that came due by the clock."""
    for _ in range(ROUNDS):
        await sandbox.post(f"{SANDBOX_PATH}/_sandbox/settle", json={})
        worker = build_worker(settings, redis_url, burst=True, handle_signals=False)
        worker.cron_jobs = [c for c in worker.cron_jobs if sweep and c.name == SWEEP_JOB]
        sweep = False
        worker.functions = {
            name: dataclasses.replace(fn, coroutine=counted_job(name, fn.coroutine))
            for name, fn in worker.functions.items()
        }
        try:
            await worker.main()
        finally:
            await worker.close()
        if worker.jobs_complete + worker.jobs_failed + worker.jobs_retried == 0:
            return
    raise RuntimeError(f"work still queued after {ROUNDS} bursts")


async def measure(args: argparse.Namespace) -> None:
    # Noon in Los Angeles whatever the hour: the counts do not depend on when this runs.
    shift = support.noon_in_los_angeles()
    clock.set_clock(lambda: datetime.now(UTC) + shift)
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run, allow_private_webhooks=True)
        receiver_port = support.free_port()
        # Inline jobs run in the process that staged them, as deployed: a new lead's first
        # text is sent by its POST's process, and counts as the POST's (its task's context).
        # `--inline-jobs 0` sends every job through the worker, each counted by its name.
        overrides = {} if args.inline_jobs is None else {"inline_jobs": args.inline_jobs}
        settings = load_settings(**run.overrides(), sms_rate_limits=False, **overrides)
        app = create_app(settings)
        sandbox = httpx.AsyncClient(base_url=run.base_url, auth=run.sandbox_auth, timeout=30)
        async with (
            served(counted_app(app), run.port),
            served(receiver_app(), receiver_port),
            run.api(tenant) as api,
            sandbox,
        ):
            await support.publish_example(api)
            hook = await api.post(
                "/v1/webhooks", json={"url": f"http://127.0.0.1:{receiver_port}/hook"}
            )
            hook.raise_for_status()
            COUNTS.taken()  # the setup's statements are not a lead's
            cpu = time.process_time()
            phones = support.lead_phones(args.leads, at=clock.now())
            for phone in phones:
                (await api.post("/v1/plays", json=support.play_body(phone))).raise_for_status()
            await work(settings, run.queue_url, sandbox)
            first = COUNTS.taken()
            cpu = time.process_time() - cpu
            if SHOWN:
                SHOW.clear()  # --show prints a new lead's, or a reply's unit not seen before
            replied = time.process_time()
            for phone in phones:
                sent = await sandbox.post(
                    f"{SANDBOX_PATH}/_sandbox/sms",
                    json={"from": phone, "to": tenant.number, "body": "yes"},
                )
                sent.raise_for_status()
            await work(settings, run.queue_url, sandbox)
            replied = time.process_time() - replied
            reply_counts = COUNTS.taken()
            # A day later each play's re-engagement text is due (the example playbook's
            # `reengagement.after`): timed work, which the sweep finds, as a drip's next step.
            clock.set_clock(lambda: datetime.now(UTC) + shift + DAY)
            due = time.process_time()
            await work(settings, run.queue_url, sandbox, sweep=True)
            due = time.process_time() - due
        planned = plans(settings.database) if args.plans else []
    clock.set_clock(None)
    db = support.database_label(args.database_url)
    print(f"# statements per unit on {db}, {args.leads} leads; {support.machine()}")
    report("a new lead, to its first text, its status callbacks and webhooks", first, args.leads)
    print(
        f"CPU per new lead of this one process (the gateway, its sandbox, the webhook receiver "
        f"and the client together; to compare builds): {cpu * 1000 / args.leads:.1f} ms"
    )
    report('each lead replies "yes"', reply_counts, args.leads)
    print(f"CPU per reply of this one process (as above): {replied * 1000 / args.leads:.1f} ms")
    report("a day later, each play's re-engagement text comes due", COUNTS, args.leads)
    print(f"CPU per play come due of this one process (as above): {due * 1000 / args.leads:.1f} ms")
    for line in planned:
        print(line)
    if args.show:
        print(f"\nthe first {args.show}, statement by statement:")
        for line in SHOWN:
            print("  " + (line if len(line) <= 160 else line[:157] + "..."))


def _whole_or_sorted(step: str) -> bool:
    """A plan step that reads a whole table or sorts (a subquery's one row is neither)."""
    if step.startswith("SCAN "):
        return not step.startswith(("SCAN CONSTANT ROW", "SCAN (subquery"))
    return "TEMP B-TREE" in step


def plans(database_url: str) -> list[str]:
    """SQLite's plan for every statement a unit sent: those that read a whole table, or sort
    rows an index could have given in order, are printed (SQLite has no statistics to go by,
    so a plan can take a worse index than the one written for the query)."""
    if not database_url.startswith("sqlite"):
        return ["", "--plans: SQLite only"]
    lines = []
    path = database_url.split("///", 1)[1]
    flagged = 0
    with contextlib.closing(sqlite3.connect(path)) as connection:
        for sql, (unit, params) in SEEN.items():
            if (
                not sql.lstrip()
                .upper()
                .startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"))
            ):
                continue  # DDL, PRAGMA, COMMIT: nothing to plan
            try:
                steps = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            except sqlite3.Error:
                continue  # a migration's, on a table it dropped since
            if any(_whole_or_sorted(step) for step in steps):
                flagged += 1
                lines += ["", f"[{unit}] {' '.join(sql.split())[:300]}"]
                lines += [f"    {step}" for step in steps]
    lines += ["", f"--plans: {flagged} of {len(SEEN)} statements read a whole table or sort"]
    return lines


def report(phase: str, counts: Counts, leads: int) -> None:
    print(f"\n{phase}:")
    print(f"{'unit':44} {'count':>6} {'statements':>11} {'transactions':>13}")
    units = sorted(set(counts.occurrences) | set(counts.statements))
    for unit in units:
        n = counts.occurrences[unit] or 1
        print(
            f"{unit:44} {counts.occurrences[unit]:>6} {counts.statements[unit] / n:>11.1f} "
            f"{counts.transactions[unit] / n:>13.1f}"
        )
    sums = [("all of it", units)]
    if "job webhooks.deliver" in units:
        # One run delivers what a subscription is owed, however many: per lead, not per run.
        sums.insert(0, ("job webhooks.deliver", ["job webhooks.deliver"]))
    if FIRST_TEXT[0] in units:
        # A play's first step runs in the POST; a build where it is a job of its own counts it.
        first = [u for u in FIRST_TEXT if u in units]
        sums.insert(0, (" + ".join(first), first))
    for label, chosen in sums:
        statements = sum(counts.statements[u] for u in chosen) / leads
        transactions = sum(counts.transactions[u] for u in chosen) / leads
        print(f"per lead, {label}: {statements:.1f} statements in {transactions:.1f} transactions")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    support.add_target_arguments(parser)
    parser.add_argument("--leads", type=int, default=20)
    parser.add_argument(
        "--show", default=None, help='a unit ("job sms.send") whose first statements to print'
    )
    parser.add_argument(
        "--inline-jobs",
        type=int,
        default=None,
        help="INLINE_JOBS of the gateway (default: the gateway's); 0 sends every job through "
        "the worker, so that each is counted by its name",
    )
    parser.add_argument(
        "--plans",
        action="store_true",
        help="print SQLite's plan of each statement that reads a whole table or sorts",
    )
    args = parser.parse_args()
    if args.show:
        SHOW.append(args.show)
    event.listen(Engine, "before_cursor_execute", _statement)
    event.listen(Engine, "commit", _transaction_end)
    event.listen(Engine, "rollback", _transaction_end)
    await measure(args)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
