"""Speed to lead: from the API's 201 for a new play to the first Messages.create for that lead.

    .venv/bin/python -m bench.speed_to_lead [--rates 10,100] [--duration 60] [--runs 3]
                                            [--database-url postgresql://...] [--one-process]
                                            [--builtin-sandbox] [--inline-jobs N]

Per run: a fresh database (default: the embedded defaults, SQLite and the embedded Redis), the
Twilio sandbox in its own process (bench/sandbox_server.py; the gateway's TWILIO_API_URL points
there, so the CPU per lead is the gateway's own; with --builtin-sandbox the one inside `gateway
web`, whose work then counts as the web process's), `gateway web`, and `gateway worker` as a
separate process (with --one-process: `gateway run`, both in one process), SMS rate limits off. The
example playbook `examples/mortgage-qualification.yaml` is published; then leads are POSTed to
/v1/plays at each rate for --duration seconds on an open schedule (a slow answer does not delay
the next lead), each a new phone inside its local contact window. For every lead: the
wall-clock time its 201 arrived here, and the wall-clock time the sandbox received that lead's
first Messages.create (the sandbox's record keeps both virtual and wall time). Both clocks are
this machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import httpx

from bench import support

SETTLE_TIMEOUT = 180.0  # seconds to wait for the last leads' texts after the last POST
# The gateway's processes are idle (their polls and sweeps only) below this share of a core.
IDLE_CPU = 0.05


async def post_leads(
    api: httpx.AsyncClient, phones: list[str], rate: float
) -> tuple[dict[str, float], list[float], int]:
    """POST one play per phone on an open schedule; (phone -> 201 wall time, API latencies,
    failures)."""
    answered: dict[str, float] = {}
    latencies: list[float] = []
    failures = [0]

    async def one(phone: str, due: float) -> None:
        try:
            answer = await api.post("/v1/plays", json=support.play_body(phone))
        except httpx.HTTPError:
            failures[0] += 1
            return
        wall, done = time.time(), time.perf_counter()
        if answer.status_code != 201:
            failures[0] += 1
            print(f"  POST /v1/plays {answer.status_code}: {answer.text[:200]}", file=sys.stderr)
            return
        answered[phone] = wall
        latencies.append(done - due)

    tasks = []
    start = time.perf_counter() + 0.05
    for i, phone in enumerate(phones):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(phone, due)))
    await asyncio.gather(*tasks)
    return answered, latencies, failures[0]


async def first_creates(run: support.Target, phones: set[str]) -> dict[str, float]:
    """Wait until the sandbox has a Messages.create for every phone (bounded); phone -> wall
    time of the first."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        first: dict[str, float] = {}
        for entry in await run.sandbox_creates():
            to = next((v for k, v in entry["params"] if k == "To"), None)
            if to in phones:
                first[to] = min(first.get(to, entry["received"]), entry["received"])
        if len(first) >= len(phones) or time.monotonic() > deadline:
            return first
        await asyncio.sleep(1.0)


async def idle(services: list[support.Service]) -> None:
    """Wait (bounded) until `services` together use under IDLE_CPU of a core over a second."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    before = sum(s.cpu_seconds() for s in services)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = sum(s.cpu_seconds() for s in services)
        if now - before < IDLE_CPU:
            return
        before = now


async def one_run(args: argparse.Namespace, number: int) -> dict[float, dict[str, Any]]:
    results: dict[float, dict[str, Any]] = {}
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run)
        if not args.builtin_sandbox:
            await run.own_sandbox()
            await run.register_number(tenant.number)
        env = {} if args.inline_jobs is None else {"INLINE_JOBS": str(args.inline_jobs)}
        if args.one_process:
            await run.web_and_worker(**env)
        else:
            await run.web(**env)
            await run.workers(1, **env)
        async with run.api(tenant) as api:
            await support.publish_example(api)
            offset = 0
            for rate in args.rates:
                count = int(rate * args.duration)
                phones = support.lead_phones(count, start=offset)
                offset += count
                gateway = run.gateway_services()
                each_before = {s.name: s.cpu_seconds() for s in gateway}
                cpu_before = sum(each_before.values())
                sandbox_before = run.sandbox.cpu_seconds() if run.sandbox else 0.0
                answered, api_latencies, failures = await post_leads(api, phones, rate)
                created = await first_creates(run, set(answered))
                # The status callbacks and the last plays' bookkeeping trail the last text
                # (by minutes at 100 leads/s): the window ends when the gateway is idle again.
                await idle(gateway)
                # Every gateway process (web, worker): the leads' requests, jobs, status
                # callbacks and webhooks. With --builtin-sandbox the web process also does
                # the sandbox's side of them; otherwise that is the sandbox process's CPU.
                each_cpu = {s.name: s.cpu_seconds() - each_before[s.name] for s in gateway}
                cpu = sum(s.cpu_seconds() for s in gateway) - cpu_before
                sandbox_cpu = (run.sandbox.cpu_seconds() if run.sandbox else 0.0) - sandbox_before
                delays = [created[p] - answered[p] for p in answered if p in created]
                result = {
                    "leads": count,
                    "created": len(delays),
                    "failures": failures,
                    "missing": len(answered) - len(delays),
                    "p50_ms": support.percentile(delays, 50) * 1000,
                    "p99_ms": support.percentile(delays, 99) * 1000,
                    "max_ms": max(delays) * 1000 if delays else float("nan"),
                    "api_p50_ms": support.percentile(api_latencies, 50) * 1000,
                    "api_p99_ms": support.percentile(api_latencies, 99) * 1000,
                    "cpu_ms_per_lead": cpu * 1000 / max(count, 1),
                    "sandbox_ms_per_lead": sandbox_cpu * 1000 / max(count, 1),
                    "by_process": {k: v * 1000 / max(count, 1) for k, v in each_cpu.items()},
                }
                results[rate] = result
                print(
                    f"  run {number} {rate:g} leads/s: {result['created']}/{count} texted, "
                    f"201->create p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms "
                    f"max {result['max_ms']:.1f} ms; POST p50 {result['api_p50_ms']:.1f} ms "
                    f"p99 {result['api_p99_ms']:.1f} ms; failures {failures}; CPU "
                    f"{result['cpu_ms_per_lead']:.1f} ms/lead (all gateway processes"
                    f" [{', '.join(f'{k} {v:.1f}' for k, v in result['by_process'].items())}]"
                    f"{', the built-in sandbox included' if args.builtin_sandbox else ''}); "
                    f"sandbox process {result['sandbox_ms_per_lead']:.1f} ms/lead",
                    file=sys.stderr,
                    flush=True,
                )
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    support.add_target_arguments(parser)
    parser.add_argument("--rates", default="10,100", help="leads per second, comma-separated")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="`gateway run` (web and worker in one process) instead of `gateway web` beside "
        "`gateway worker`",
    )
    parser.add_argument(
        "--builtin-sandbox",
        action="store_true",
        help="the sandbox inside `gateway web` (its CPU counts as the gateway's) instead of in "
        "its own process",
    )
    parser.add_argument(
        "--inline-jobs",
        type=int,
        default=None,
        help="INLINE_JOBS of the gateway's processes (default: the gateway's); 0 sends every "
        "job through Redis, as before inline jobs",
    )
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    runs = [await one_run(args, n + 1) for n in range(args.runs)]
    db = support.database_label(args.database_url)
    fmt = support.fmt_runs
    layout = "`gateway run`, one process" if args.one_process else "worker in its own process"
    layout += "; sandbox inside `gateway web`" if args.builtin_sandbox else "; sandbox in its own"
    if args.inline_jobs is not None:
        layout += f"; INLINE_JOBS={args.inline_jobs}"
    print(f"# speed to lead on {db}, {layout}; {support.machine()}")
    for rate in args.rates:
        each = [r[rate] for r in runs]
        missing = sum(r["missing"] + r["failures"] for r in each)
        print(
            f"speed_to_lead {db} {rate:g} leads/s for {args.duration:g} s: 201 -> first "
            f"Messages.create p50 {fmt([r['p50_ms'] for r in each], 1)} ms, "
            f"p99 {fmt([r['p99_ms'] for r in each], 1)} ms; POST p50 "
            f"{fmt([r['api_p50_ms'] for r in each], 1)} ms; CPU "
            f"{fmt([r['cpu_ms_per_lead'] for r in each], 1)} ms/lead (sandbox process "
            f"{fmt([r['sandbox_ms_per_lead'] for r in each], 1)}); not texted or failed: "
            f"{missing}"
        )


if __name__ == "__main__":
    asyncio.run(main())
