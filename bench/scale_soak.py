"""The soak of bench/scale.py: `gateway web` and `gateway worker` on the big database under a
steady load, with the RSS of both sampled throughout.

Processes (all on 127.0.0.1): the Twilio sandbox in its own process (it keeps a record of
every request and callback, which grows by design; inside `gateway web` it would hide the
web app's own memory), `gateway web` with `TWILIO_API_URL` pointing at it (the gateway's
sandbox mode otherwise: sandbox credentials, signed callbacks), `gateway worker`, and a
webhook receiver in this process. Load, for `--soak-seconds`: plays started through
`POST /v1/plays` at `--soak-rate` per second (leads in a time zone where it is daytime, so the
texts leave at once), a third of the leads answering "yes" then "350k", a third "no";
`GET /v1/plays?state=running` about twice a second (once at 1 play/s); the sandbox's status
callbacks, the outbound webhooks and the worker's sweeps run as they do in service.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import create_engine, session_factory, transaction
from gateway.webhooks.addresses import set_private_allowed

# Imported as `bench.scale_soak` or, from `python bench/scale.py`, as `scale_soak`.
if __package__:
    from bench import sandbox_server
else:
    import sandbox_server

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(Path(sys.executable).parent / "gateway")
OUR_NUMBER = "+18085550100"
PLAYBOOK = ROOT / "examples" / "mortgage-qualification.yaml"
# The soak's own sandbox (bench/sandbox_server.py on a free local port) and the gateway talk
# with these, passed to the gateway as its Twilio credentials (TWILIO_API_URL points there).
SANDBOX_AUTH = sandbox_server.AUTH


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Area codes with one time zone each; the soak texts leads where it is daytime now.
DAYTIME_AREAS = [
    ("671", "Pacific/Guam"),
    ("808", "Pacific/Honolulu"),
    ("415", "America/Los_Angeles"),
    ("212", "America/New_York"),
]


def daytime_area() -> str:
    for area, zone in DAYTIME_AREAS:
        if 9 <= datetime.now(ZoneInfo(zone)).hour < 19:
            return area
    raise RuntimeError("no daytime zone among DAYTIME_AREAS")


def lead_phone(area: str, n: int) -> str:
    """Exchange 483 (valid in each area above); the seeded leads use exchanges 200-299."""
    return f"+1{area}{4830000 + n % 10000:07d}"


def rss_mb(pid: int) -> float:
    """Resident set size of a process (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Stack:
    web: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes] | None
    sandbox: subprocess.Popen[bytes]
    base: str
    sandbox_base: str
    env: dict[str, str]
    logs: Path


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


async def _wait_ready(url: str, auth: tuple[str, str] | None = None, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    async with httpx.AsyncClient(auth=auth) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {limit} s")
            await asyncio.sleep(0.3)


async def start_web(database_url: str, redis_url: str, logs: Path) -> Stack:
    """The sandbox and `gateway web` (no worker yet), ready; `logs` must exist."""
    sandbox_port, web_port = free_port(), free_port()
    sandbox_base = f"http://127.0.0.1:{sandbox_port}"
    sandbox = _spawn(
        [sys.executable, "-m", "bench.sandbox_server", str(sandbox_port)],
        dict(os.environ),
        logs / "sandbox.log",
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PORT": str(web_port),
        "TWILIO_API_URL": sandbox_base,
        "TWILIO_ACCOUNT_SID": SANDBOX_AUTH[0],
        "TWILIO_AUTH_TOKEN": SANDBOX_AUTH[1],
        "SMS_RATE_LIMITS": "false",
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": str(logs / "data"),
    }
    web = _spawn([GATEWAY, "web", "--host", "127.0.0.1"], env, logs / "web.log")
    base = f"http://127.0.0.1:{web_port}"
    await _wait_ready(f"{sandbox_base}/_sandbox/clock", SANDBOX_AUTH)
    await _wait_ready(f"{base}/healthz")
    return Stack(web, None, sandbox, base, sandbox_base, env, logs)


def start_worker(stack: Stack) -> None:
    stack.worker = _spawn([GATEWAY, "worker"], stack.env, stack.logs / "worker.log")


def stop(stack: Stack) -> None:
    """Worker first (its running jobs finish against a live sandbox), then web, then sandbox."""
    for process in (stack.worker, stack.web, stack.sandbox):
        if process is None:
            continue
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the load -------------------------------------------------------------------------------


@dataclass
class Load:
    statuses: Counter[str] = field(default_factory=Counter)
    create_ms: list[float] = field(default_factory=list)
    list_ms: list[float] = field(default_factory=list)
    webhooks_received: int = 0
    replies_sent: int = 0


async def prepare(
    stack: Stack, database_url: str, accounts: list[tuple[str, str]], receiver_url: str
) -> None:
    """Playbooks for both accounts (their seeded plays name it), our number on the sandbox,
    a webhook subscription of account A to the local receiver."""
    playbook = PLAYBOOK.read_bytes()
    # The Twilio account owns the number before an account registers it (the gateway asks).
    await sandbox_server.register_number(stack.sandbox_base, OUR_NUMBER, stack.base)
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as client:
        for _account_id, key in accounts:
            answer = await client.put(
                "/v1/playbooks/mortgage-qualification",
                content=playbook,
                headers={"Authorization": key, "Content-Type": "application/yaml"},
            )
            answer.raise_for_status()
        account_a, key_a = accounts[0]
        answer = await client.post(
            "/v1/numbers", json={"number": OUR_NUMBER}, headers={"Authorization": key_a}
        )
        if answer.status_code != 409:  # 409: registered by an earlier run (--reuse)
            answer.raise_for_status()
        # An earlier run's receiver is gone: drop its subscription so nothing is sent twice.
        listed = await client.get("/v1/webhooks", headers={"Authorization": key_a})
        for webhook in listed.raise_for_status().json()["data"]:
            if webhook["url"].startswith("http://127.0.0.1:"):
                gone = await client.delete(
                    f"/v1/webhooks/{webhook['id']}", headers={"Authorization": key_a}
                )
                gone.raise_for_status()
        engine = create_engine(database_url)
        async with transaction(session_factory(engine)) as session:
            await set_private_allowed(session, account_a, True)
        await engine.dispose()
        answer = await client.post(
            "/v1/webhooks", json={"url": receiver_url}, headers={"Authorization": key_a}
        )
        answer.raise_for_status()


def receiver(load: Load) -> Starlette:
    async def hook(request: Request) -> Response:
        await request.body()
        load.webhooks_received += 1
        return Response(status_code=200)

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def _reply(sandbox: httpx.AsyncClient, load: Load, phone: str, bodies: list[str]) -> None:
    for body in bodies:
        await asyncio.sleep(5)
        with contextlib.suppress(httpx.HTTPError):
            answer = await sandbox.post(
                "/_sandbox/sms", json={"from": phone, "to": OUR_NUMBER, "body": body}
            )
            load.statuses[f"reply {answer.status_code}"] += 1
            load.replies_sent += 1


async def drive(stack: Stack, key: str, seconds: float, rate: float, load: Load) -> None:
    """Start plays at `rate`/s and poll the running list, for `seconds`."""
    headers = {"Authorization": key}
    tasks: set[asyncio.Task[None]] = set()
    area = daytime_area()
    async with (
        httpx.AsyncClient(base_url=stack.base, timeout=30, headers=headers) as client,
        httpx.AsyncClient(base_url=stack.sandbox_base, auth=SANDBOX_AUTH, timeout=30) as sandbox,
    ):

        async def start(n: int) -> None:
            phone = lead_phone(area, n)
            body = {
                "playbook_id": "mortgage-qualification",
                "lead": {"phone": phone, "first_name": f"Soak{n}"},
                "settings": {"partner_name": "Acme Lending"},
            }
            began = time.perf_counter()
            try:
                answer = await client.post("/v1/plays", json=body)
            except httpx.HTTPError as exc:
                load.statuses[f"create {type(exc).__name__}"] += 1
                return
            load.create_ms.append((time.perf_counter() - began) * 1000)
            load.statuses[f"create {answer.status_code}"] += 1
            if n % 3 == 0:
                await _reply(sandbox, load, phone, ["yes", "350k"])
            elif n % 3 == 1:
                await _reply(sandbox, load, phone, ["no"])

        async def poll() -> None:
            began = time.perf_counter()
            try:
                answer = await client.get("/v1/plays", params={"state": "running"})
            except httpx.HTTPError as exc:
                load.statuses[f"list {type(exc).__name__}"] += 1
                return
            load.list_ms.append((time.perf_counter() - began) * 1000)
            load.statuses[f"list {answer.status_code}"] += 1

        began = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - began) < seconds:
            # Paced by the clock, not by sleeps, so slow answers don't lower the rate.
            while n < elapsed * rate:
                task = asyncio.create_task(start(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if n % max(1, round(rate / 2)) == 0:
                    task = asyncio.create_task(poll())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.02)
        if tasks:
            await asyncio.wait(tasks, timeout=30)


# -- memory ---------------------------------------------------------------------------------


@dataclass
class Samples:
    at: list[float] = field(default_factory=list)
    mb: dict[str, list[float]] = field(default_factory=dict)


async def sample(pids: dict[str, int], every: float, samples: Samples, stop: asyncio.Event) -> None:
    began = time.monotonic()
    while not stop.is_set():
        samples.at.append(time.monotonic() - began)
        for name, pid in pids.items():
            samples.mb.setdefault(name, []).append(rss_mb(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def slope_mb_per_min(at: list[float], mb: list[float]) -> float:
    """Least-squares slope of RSS over time."""
    if len(at) < 2:
        return 0.0
    fit = statistics.linear_regression(at, mb)
    return fit.slope * 60


# -- the soak -------------------------------------------------------------------------------


async def soak(
    database_url: str,
    redis_url: str,
    accounts: list[tuple[str, str]],
    *,
    seconds: float,
    rate: float,
    every: float,
    logs: Path,
) -> tuple[Samples, Load]:
    load = Load()
    receiver_port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(receiver(load), host="127.0.0.1", port=receiver_port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    stack = await start_web(database_url, redis_url, logs)
    try:
        await prepare(stack, database_url, accounts, f"http://127.0.0.1:{receiver_port}/hook")
        start_worker(stack)
        assert stack.worker is not None
        await asyncio.sleep(3)
        samples = Samples()
        done = asyncio.Event()
        pids = {"web": stack.web.pid, "worker": stack.worker.pid, "sandbox": stack.sandbox.pid}
        sampler = asyncio.create_task(sample(pids, every, samples, done))
        await drive(stack, accounts[0][1], seconds, rate, load)
        await asyncio.sleep(min(every * 2, 10))  # the worker finishes what the load queued
        done.set()
        await sampler
        for name, process in (("web", stack.web), ("worker", stack.worker)):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode} during the soak")
    finally:
        stop(stack)
        server.should_exit = True
        await serving
    return samples, load
