"""Instructions per unit: what a unit of work costs the gateway, counted by valgrind, not timed.

    .venv/bin/python -m bench.instructions [--units post,lead,send,inbound] [--count 40]
                                           [--kernel] [--database-url postgresql://...]

Why: this machine's speed swings by up to 2x for minutes (the speed index, bench/RESULTS.md
§24), so CPU time per unit cannot show a change of a few percent, and pairs of timed runs
settle little. The instructions a process executes for the same work can: the gateway's
process under test runs under valgrind's callgrind, with instrumentation off until the measured
part, around which it is switched on, zeroed and dumped (`callgrind_control`). On a quiet
machine two runs of one build count within 1-5 % of each other, where their CPU times differ by
up to 2x, so two builds can be compared in minutes. Not beside a test suite: a slower process
batches differently (an inbound text's coalesced hand-off, bench/RESULTS.md §25) and waits
longer, so the idle rate taken off grows. The count covers every thread of that process
(the event loop, the SQLite driver's thread), not its children (the embedded Redis) and not
the other processes of the run. Nor the kernel's work: with --kernel the units run natively and
`perf stat` counts the process's system calls, context switches and CPU time instead (the
first two as steady; a hand-off to the SQLite driver's thread is two context switches).

Units (a fresh database and Redis for each; SQLite, or a scratch database on --database-url):
- `post`: `gateway web` with INLINE_JOBS=0 and no worker. One `POST /v1/plays` of a new lead
  on the example playbook: the key's lookup, the lead, the play, its first step and its queued
  text. Nothing is sent.
- `lead`: `gateway run` (the embedded defaults: the app, its worker and inline sends in one
  process), the sandbox in a process of its own. One new lead from its `POST` until its first
  text is `delivered` and no status callback is left to act on: the route, the send, both
  callbacks' appends and their job. One lead at a time, each waited for.
- `send`: `gateway worker`, with `gateway web` serving the built-in sandbox beside it (not
  counted). One queued one-off text sent (bench.dispatch's unit), its status callbacks acted on
  by the same worker. All of them queued, then handed to Redis as their commit would hand them
  (since 2026-12-07: as their account's `sms.sends` job, which sends them in batches).
- `inbound`: `gateway web`, with a `gateway worker` beside it (not counted). One signed inbound
  text's webhook (`POST /twilio/sms`, bench.inbound's request): the signature, the checks, the
  append and the hand-off of the inbox's job. One request at a time, on one connection.

An idle process executes instructions too (arq polls Redis every 50 ms; uvicorn keeps its
clock): that rate is counted for a few seconds before each unit and taken off its count for the
time the unit's part lasted. Under valgrind the process runs 20-50 times slower, so work that is
batched by time (status callbacks, coalesced hand-offs) forms the batches that a low rate forms.
The counts compare builds; they are not a CPU time (this machine ran about 2.3 billion of them
a second when its speed index read 11).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
from sqlalchemy import text

from bench import inbound, loadgen, support
from bench.dispatch import enqueue, queue
from gateway.worker import SWEEP_EVERY_SECONDS

UNITS = ("post", "lead", "send", "inbound")
# The idle rate is counted over one period of the worker's sweeps (gateway.worker), so it holds
# their share as the measured part does.
IDLE_SECONDS = float(SWEEP_EVERY_SECONDS)
SETTLE_TIMEOUT = 600.0  # seconds for a measured part to finish, under valgrind
WARM_UP = 5  # units done before counting: first-use work (compiled statements, caches)


@dataclass
class Counted:
    """One unit's counts in the measured part (by event), the idle rates, how long it took."""

    unit: str
    count: int
    counts: dict[str, float]
    idle_per_second: dict[str, float]
    seconds: float

    def per_unit(self, event: str) -> float:
        """The event per unit, the idle rate over the same time taken off."""
        busy = self.counts[event] - self.idle_per_second[event] * self.seconds
        return busy / self.count

    def raw_per_unit(self, event: str) -> float:
        return self.counts[event] / self.count


class Counter(Protocol):
    """Counts what one process of the run does between `zero` and `dump`."""

    wrap: list[str]  # the command the process is started under

    def attach(self, service: support.Service) -> None: ...
    def zero(self) -> None: ...
    async def dump(self) -> dict[str, float]: ...


class Callgrind:
    """A process started under callgrind with instrumentation off: its instructions (`Ir`)."""

    def __init__(self, out_dir: Path) -> None:
        if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
            raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
        self.out_dir = out_dir
        self.pid = 0
        self.wrap = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_dir}/callgrind.%p",
        ]

    def attach(self, service: support.Service) -> None:
        self.pid = service.process.pid
        self._control("-i", "on")

    def zero(self) -> None:
        self._control("-z")

    async def dump(self) -> dict[str, float]:
        """The instructions counted since the last zero (a dump zeroes them as well)."""
        before = set(self.out_dir.glob(f"callgrind.{self.pid}.*"))
        self._control("-d")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for path in set(self.out_dir.glob(f"callgrind.{self.pid}.*")) - before:
                found = _total(path)
                if found is not None:
                    return {"instructions": found}
            await asyncio.sleep(0.1)
        raise RuntimeError("callgrind wrote no dump within 60 s")

    def _control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.pid)],
            check=True,
            capture_output=True,
            timeout=60,
        )


def _total(path: Path) -> int | None:
    """The `summary:` (or `totals:`) line of a complete callgrind dump; None while it is being
    written."""
    try:
        content = path.read_text(errors="replace")
    except OSError:
        return None
    for line in content.splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return None


# What `perf stat` counts (--kernel): software events and a tracepoint, which a virtual
# machine without hardware counters still has.
PERF_EVENTS = {
    "raw_syscalls:sys_enter": "system calls",
    "context-switches": "context switches",
    "task-clock": "CPU ms",
}


class PerfStat:
    """A process run natively, its system calls, context switches and CPU counted by `perf stat`
    attached between `zero` and `dump`: the kernel's side, which callgrind does not see."""

    def __init__(self) -> None:
        if shutil.which("perf") is None:
            raise SystemExit("--kernel needs perf (apt-get install linux-perf)")
        self.wrap: list[str] = []
        self.pid = 0
        self._perf: subprocess.Popen[str] | None = None

    def attach(self, service: support.Service) -> None:
        self.pid = service.process.pid

    def zero(self) -> None:
        events = ",".join(PERF_EVENTS)
        self._perf = subprocess.Popen(
            ["perf", "stat", "-x,", "-e", events, "-p", str(self.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.2)  # perf attaches before the work begins

    async def dump(self) -> dict[str, float]:
        assert self._perf is not None
        self._perf.send_signal(signal.SIGINT)
        _, report = await asyncio.to_thread(self._perf.communicate, timeout=30)
        counts: dict[str, float] = {}
        for line in report.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] in PERF_EVENTS:
                counts[PERF_EVENTS[fields[2]]] = float(fields[0])
        if len(counts) != len(PERF_EVENTS):
            raise RuntimeError(f"perf stat counted {sorted(counts)}: {report[-500:]}")
        return counts


async def counted(
    counter: Counter, unit: str, count: int, work: Callable[[], Awaitable[None]]
) -> Counted:
    # The idle rate first, over one sweep period.
    counter.zero()
    started = time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    idle = await counter.dump()
    idle_seconds = time.monotonic() - started
    counter.zero()
    started = time.monotonic()
    await work()
    seconds = time.monotonic() - started
    counts = await counter.dump()
    rates = {event: idle[event] / idle_seconds for event in counts}
    return Counted(unit, count, counts, rates, seconds)


async def post_leads(api: httpx.AsyncClient, phones: list[str]) -> None:
    for phone in phones:
        answer = await api.post("/v1/plays", json=support.play_body(phone))
        if answer.status_code != 201:
            raise RuntimeError(f"POST /v1/plays {answer.status_code}: {answer.text[:200]}")


async def settled(run: support.Target, texts: int) -> None:
    """Wait until `texts` outbound texts are delivered and no status callback or inbound text
    is left to act on (bounded)."""
    query = text(
        "SELECT (SELECT count(*) FROM messages WHERE direction = 'outbound'"
        " AND status = 'delivered'),"
        " (SELECT count(*) FROM webhook_claims WHERE done_at IS NULL)"
    )
    deadline = time.monotonic() + SETTLE_TIMEOUT
    async with run.sessions() as sessions:
        while time.monotonic() < deadline:
            async with sessions() as session:
                connection = await session.connection()
                delivered, pending = (await connection.execute(query)).one()
            if delivered >= texts and pending == 0:
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"not settled within {SETTLE_TIMEOUT:.0f} s")


async def post_unit(args: argparse.Namespace, grind: Counter) -> Counted:
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run)
        grind.attach(await run.web(wrap=grind.wrap, INLINE_JOBS="0"))
        phones = support.lead_phones(WARM_UP + args.count)
        async with run.api(tenant, timeout=SETTLE_TIMEOUT) as api:
            await support.publish_example(api)
            await post_leads(api, phones[:WARM_UP])
            return await counted(
                grind, "post", args.count, lambda: post_leads(api, phones[WARM_UP:])
            )


async def lead_unit(args: argparse.Namespace, grind: Counter) -> Counted:
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run)
        await run.own_sandbox()
        await run.register_number(tenant.number)
        grind.attach(await run.web_and_worker(wrap=grind.wrap))
        phones = support.lead_phones(WARM_UP + args.count)
        async with run.api(tenant, timeout=SETTLE_TIMEOUT) as api:
            await support.publish_example(api)

            async def one_by_one(chosen: list[str], before: int) -> None:
                for i, phone in enumerate(chosen, start=1):
                    await post_leads(api, [phone])
                    await settled(run, before + i)

            await one_by_one(phones[:WARM_UP], 0)
            return await counted(
                grind, "lead", args.count, lambda: one_by_one(phones[WARM_UP:], WARM_UP)
            )


async def send_unit(args: argparse.Namespace, grind: Counter) -> Counted:
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run)
        await run.web()
        (worker,) = await run.workers(1, wrap=grind.wrap)
        grind.attach(worker)
        phones = support.lead_phones(WARM_UP + args.count)
        await enqueue(run, tenant.account_id, await queue(run, tenant, phones[:WARM_UP]))
        await settled(run, WARM_UP)

        async def send() -> None:
            # Queued in the counted part: a queued row is the worker's sweep's to find, even
            # before its job is enqueued (the queuing is this process's work, not counted).
            await enqueue(run, tenant.account_id, await queue(run, tenant, phones[WARM_UP:]))
            await settled(run, WARM_UP + args.count)

        return await counted(grind, "send", args.count, send)


async def send_raw(port: int, requests: list[bytes]) -> None:
    """Each raw HTTP request in turn on one keep-alive connection; a non-2xx answer is an
    error."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        conn = loadgen.Conn(reader, writer)
        for request in requests:
            status, _ = await asyncio.wait_for(loadgen.exchange(conn, request), SETTLE_TIMEOUT)
            if not 200 <= status < 300:
                raise RuntimeError(f"webhook answered {status}")
    finally:
        writer.close()


async def inbound_unit(args: argparse.Namespace, grind: Counter) -> Counted:
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run)
        async with run.sessions() as sessions:
            phones = await inbound.add_leads(sessions, tenant.account_id)
            grind.attach(await run.web(wrap=grind.wrap))
            await run.workers(1)
            requests = inbound.Requests(
                run.base_url, run.port, phones, sessions, tenant.account_id, run.sandbox_auth
            )
            await send_raw(run.port, requests.inbound(WARM_UP))
            await requests.drained("inbound")
            texts = requests.inbound(args.count)

            async def append() -> None:
                await send_raw(run.port, texts)
                await requests.drained("inbound")

            return await counted(grind, "inbound", args.count, append)


MEASURE = {"post": post_unit, "lead": lead_unit, "send": send_unit, "inbound": inbound_unit}


def figure(result: Counted, event: str) -> str:
    """One event per unit, in millions for instructions."""
    scale, unit = (1e6, " M") if event == "instructions" else (1.0, "")
    per_unit = result.per_unit(event) / scale
    idle = result.idle_per_second[event] / scale
    return (
        f"{per_unit:.2f}{unit} {event} per unit ({result.raw_per_unit(event) / scale:.2f}"
        f" before the idle rate, {idle:.2f}{unit}/s over {result.seconds:.1f} s)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    support.add_target_arguments(parser)
    parser.add_argument("--units", default=",".join(UNITS), help="a subset of " + ",".join(UNITS))
    parser.add_argument("--count", type=int, default=40, help="units counted, after the warm-up")
    parser.add_argument(
        "--kernel",
        action="store_true",
        help="run natively and count system calls, context switches and CPU (perf stat)",
    )
    args = parser.parse_args()
    units = [u for u in args.units.split(",") if u]
    unknown = set(units) - set(UNITS)
    if unknown:
        parser.error(f"unknown unit(s): {', '.join(sorted(unknown))}")
    results: list[Counted] = []
    with tempfile.TemporaryDirectory(prefix="gw-callgrind-") as out_dir:
        for unit in units:
            counter: Counter = PerfStat() if args.kernel else Callgrind(Path(out_dir))
            result = await MEASURE[unit](args, counter)
            for event in result.counts:
                print(f"  {unit}: {figure(result, event)}", file=sys.stderr, flush=True)
            results.append(result)
    label = support.database_label(args.database_url)
    what = "system calls, context switches and CPU" if args.kernel else "instructions"
    print(f"# {what} per unit on {label}, {args.count} each; {support.machine()}")
    for result in results:
        for event in result.counts:
            print(f"instructions {label} {result.unit}: {figure(result, event)}")


if __name__ == "__main__":
    asyncio.run(main())
