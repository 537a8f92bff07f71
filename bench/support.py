"""Shared plumbing of the benchmarks: scratch databases, the gateway's processes on free ports,
an account with its key and number, lead phones that the gate lets through now, percentiles.

Every benchmark runs the real processes (`gateway web`, `gateway worker`, uvicorn) as
subprocesses of the script, so what is measured is what a deployment runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]
import httpx
import redis.asyncio

from bench import sandbox_server
from gateway import accounts
from gateway.db import SessionFactory, create_engine, session_factory, transaction
from gateway.ids import new_id
from gateway.migrate import upgrade_async
from gateway.models import SenderNumber
from gateway.redis_embedded import EmbeddedRedis
from gateway.sandbox_credentials import load_or_create
from gateway.settings import SANDBOX_PATH, load_settings
from gateway.webhooks.addresses import set_private_allowed

REPO = Path(__file__).resolve().parent.parent
# The playbook the benches start their leads on.
EXAMPLE_PLAYBOOK = REPO / "examples" / "mortgage-qualification.yaml"
BIN = Path(sys.executable).parent  # the virtualenv the benchmark runs in
OUR_NUMBER = "+16714770100"
START_TIMEOUT = 60.0
# The command that runs the gateway's processes; BENCH_GATEWAY runs the same benchmark
# against another build or a patched entry point (an experiment), e.g. "python /tmp/x.py".
GATEWAY = shlex.split(os.environ.get("BENCH_GATEWAY", str(BIN / "gateway")))

# Area codes with one time zone each, tried in order: leads must be inside 08:00-20:00 local
# time (the gate defers everything else), so the benchmark picks a zone where it is day now,
# by the gateway's clock (`clock_ahead`).
_ZONES = [
    ("671", "Pacific/Guam"),
    ("808", "Pacific/Honolulu"),
    ("907", "America/Anchorage"),
    ("415", "America/Los_Angeles"),
    ("303", "America/Denver"),
    ("312", "America/Chicago"),
    ("212", "America/New_York"),
]


# -- numbers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank on the sorted values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_runs(values: Sequence[float], digits: int = 0) -> str:
    """'median (run1, run2, run3)' for a summary line."""
    each = ", ".join(f"{v:.{digits}f}" for v in values)
    return f"{median(values):.{digits}f} (runs: {each})"


def _fixed_work() -> None:
    """A fixed piece of pure-Python work (objects, dicts, strings, JSON) for `speed_index`."""
    rows = [{"id": i, "phone": f"+1415{i:07d}", "tags": [i, i * 2]} for i in range(3000)]
    json.loads(json.dumps(rows))
    rows.sort(key=lambda row: -row["id"])
    total = 0
    for i in range(60_000):
        total += len(str(i)) % 7


# `speed_index` at the start of each run (`target`) of this script, for `machine`.
_INDEXES: list[float] = []


def speed_index() -> float:
    """Milliseconds of CPU this machine takes for `_fixed_work` (the best of seven tries; lower
    is faster). Sessions run on different machines, and one machine's speed drifts (on this
    kind of virtual machine, twice as slow for minutes, seen 2026-12-06): a figure per lead is
    comparable with another run's only beside this index (or in the same run)."""
    best = float("inf")
    for _ in range(7):
        started = time.process_time()
        _fixed_work()
        best = min(best, time.process_time() - started)
    return best * 1000


def machine() -> str:
    """Cores, memory, load and speed index, for the results file."""
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    load = os.getloadavg()
    return (
        f"{platform.machine()} {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB, "
        f"python {platform.python_version()}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        "speed index "
        + ", ".join(f"{i:.1f}" for i in [*_INDEXES, speed_index()])
        + " ms (at each run's start, then now)"
    )


def noon_in_los_angeles() -> timedelta:
    """How far to set the gateway's clock ahead for it to read the next noon in Los Angeles."""
    local = datetime.now(UTC).astimezone(ZoneInfo("America/Los_Angeles"))
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    return (noon if noon > local else noon + timedelta(days=1)) - local


def _in_window(at: datetime) -> tuple[str, str] | None:
    for area, zone in _ZONES:
        if 9 <= at.astimezone(ZoneInfo(zone)).hour < 19:
            return area, zone
    return None


@cache
def clock_ahead() -> timedelta:
    """How far this run sets the gateway's clock ahead (its processes' CLOCK_AHEAD_SECONDS):
    nothing while some US zone is inside 09:00-19:00; else to the next noon in Los Angeles
    (09:00-14:00 UTC no zone is), so a benchmark runs at any hour. Decided once per run."""
    if _in_window(datetime.now(UTC)) is not None:
        return timedelta()
    ahead = noon_in_los_angeles()
    print(f"# the gateway's clock runs {ahead} ahead: no US zone in 09:00-19:00", file=sys.stderr)
    return ahead


async def publish_example(api: httpx.AsyncClient) -> None:
    """Publish `EXAMPLE_PLAYBOOK` on the tenant `api` speaks for."""
    answer = await api.put(
        f"/v1/playbooks/{EXAMPLE_PLAYBOOK.stem}",
        content=EXAMPLE_PLAYBOOK.read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    answer.raise_for_status()


def play_body(phone: str) -> dict[str, Any]:
    """The `POST /v1/plays` body that starts a new lead on `EXAMPLE_PLAYBOOK`."""
    return {
        "playbook_id": EXAMPLE_PLAYBOOK.stem,
        "lead": {"phone": phone, "first_name": "Kai"},
        "settings": {"partner_name": "Bench Lending"},
    }


def lead_phones(count: int, start: int = 0, at: datetime | None = None) -> list[str]:
    """`count` distinct valid phone numbers in a US zone where it is 09:00-19:00 by the
    gateway's clock (or at `at`, for a run that sets that clock itself)."""
    found = _in_window(at or datetime.now(UTC) + clock_ahead())
    if found is None:
        raise SystemExit("no US time zone is inside 09:00-19:00 then; the gate would defer")
    return [f"+1{found[0]}{4_000_000 + start + i:07d}" for i in range(count)]


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A subprocess of the benchmark (its output goes to a log file)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (Linux /proc)."""
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def start_service(
    name: str, args: list[str], env: dict[str, str], log_dir: Path, url: str | None = None
) -> Service:
    log_path = log_dir / f"{name}.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    process = subprocess.Popen(
        args, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
    )
    log_file.close()
    return Service(name, process, log_path, url)


async def wait_ready(
    service: Service,
    path: str = "/healthz",
    auth: tuple[str, str] | None = None,
    *,
    within: float = START_TIMEOUT,
) -> None:
    """Poll `service.url + path` until it answers 200 (or the process dies)."""
    assert service.url is not None
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2, auth=auth) as client:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                tail = service.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{service.name} exited:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(service.url + path)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{service.name} did not answer {path} within {within:.0f}s")


async def wait_polling(
    redis_url: str, count: int, services: list[Service], *, within: float = START_TIMEOUT
) -> None:
    """Wait until `count` Redis clients have been seen polling arq's queue: a worker is ready
    once its imports, startup and first poll are done (seconds, on a busy machine). Start the
    workers before enqueuing the work, so an idle worker polls every 50 ms and shows."""
    client = redis.asyncio.Redis.from_url(redis_url)
    deadline = time.monotonic() + within
    polling: set[str] = set()
    try:
        while time.monotonic() < deadline:
            for service in services:
                if service.process.poll() is not None:
                    tail = service.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{service.name} exited:\n{tail}")
            clients = await client.client_list()
            polling |= {c["id"] for c in clients if c.get("cmd") == "zrangebyscore"}
            if len(polling) >= count:
                return
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    raise RuntimeError(f"{count} workers were not polling within {within:.0f}s")


def _start_timeout(wrap: Sequence[str]) -> float:
    # Under valgrind a process starts about ten times slower, even with nothing instrumented.
    return START_TIMEOUT * 5 if wrap else START_TIMEOUT


# -- the environment of one run --------------------------------------------------------------


@dataclass
class Target:
    """Where one run keeps its data: a temp DATA_DIR, the database, Redis."""

    data_dir: Path
    database_url: str | None  # None: the embedded SQLite file in data_dir
    redis_url: str | None  # None: the embedded Redis on a socket in data_dir
    port: int = field(default_factory=free_port)
    services: list[Service] = field(default_factory=list)
    sandbox: Service | None = None  # the sandbox in its own process (`own_sandbox`)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sandbox_auth(self) -> tuple[str, str]:
        """The sandbox's credentials: the own process's, or those of the one inside `gateway
        web` (its DATA_DIR's shared file)."""
        if self.sandbox is not None:
            return sandbox_server.AUTH
        creds = load_or_create(self.data_dir)
        return creds.account_sid, creds.auth_token

    @property
    def sandbox_url(self) -> str:
        if self.sandbox is not None:
            assert self.sandbox.url is not None
            return self.sandbox.url
        return self.base_url + SANDBOX_PATH

    def gateway_services(self) -> list[Service]:
        """The gateway's own processes (not the sandbox standing in for Twilio)."""
        return [s for s in self.services if s is not self.sandbox]

    async def own_sandbox(self) -> Service:
        """The sandbox in a process of its own (before `web()`: the gateway's processes get
        TWILIO_API_URL and its credentials, so `gateway web` serves no sandbox of its own)."""
        port = free_port()
        service = self.start(
            "sandbox",
            [sys.executable, "-m", "bench.sandbox_server", str(port)],
            f"http://127.0.0.1:{port}",
        )
        self.sandbox = service
        await wait_ready(service, "/_sandbox/clock", auth=sandbox_server.AUTH)
        return service

    async def register_number(self, number: str) -> None:
        """Give the own sandbox's Twilio account `number`, its webhooks this gateway's."""
        await sandbox_server.register_number(self.sandbox_url, number, self.base_url)

    def overrides(self) -> dict[str, object]:
        values: dict[str, object] = {
            "data_dir": self.data_dir,
            "port": self.port,
            "clock_ahead_seconds": clock_ahead().total_seconds(),
        }
        if self.database_url:
            values["database_url"] = self.database_url
        if self.redis_url:
            values["redis_url"] = self.redis_url
        return values

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the gateway's processes: only what the run decides."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_GATEWAY_VARS)}
        env.update(
            DATA_DIR=str(self.data_dir),
            PORT=str(self.port),
            SMS_RATE_LIMITS="false",
            CLOCK_AHEAD_SECONDS=str(clock_ahead().total_seconds()),
            # INFO logs a line per request (uvicorn's access log included); the benchmarks
            # measure the service, not its log volume. BENCH_LOG_LEVEL=INFO to see both.
            LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        if self.sandbox is not None:
            env["TWILIO_API_URL"] = self.sandbox_url
            env["TWILIO_ACCOUNT_SID"], env["TWILIO_AUTH_TOKEN"] = sandbox_server.AUTH
        env.update(extra)
        return env

    def start(self, name: str, args: list[str], url: str | None = None, **env: str) -> Service:
        service = start_service(name, args, self.env(**env), self.data_dir, url)
        self.services.append(service)
        return service

    async def web(self, *, wrap: Sequence[str] = (), **env: str) -> Service:
        """`gateway web` (one uvicorn process) on this run's port, ready. `wrap`: a command
        that runs it (valgrind, for bench.instructions); it may take that much longer to start."""
        args = [*wrap, *GATEWAY, "web", "--host", "127.0.0.1"]
        service = self.start("web", args, self.base_url, **env)
        await wait_ready(service, within=_start_timeout(wrap))
        return service

    async def web_and_worker(self, *, wrap: Sequence[str] = (), **env: str) -> Service:
        """`gateway run` (the app and its worker in one process) on this run's port, ready and
        polling the queue."""
        args = [*wrap, *GATEWAY, "run", "--host", "127.0.0.1"]
        service = self.start("run", args, self.base_url, **env)
        await wait_ready(service, within=_start_timeout(wrap))
        await wait_polling(self.queue_url, 1, [service], within=_start_timeout(wrap))
        return service

    def worker(self, name: str = "worker", *, wrap: Sequence[str] = (), **env: str) -> Service:
        return self.start(name, [*wrap, *GATEWAY, "worker"], **env)

    async def workers(self, count: int, *, wrap: Sequence[str] = (), **env: str) -> list[Service]:
        """Start `count` `gateway worker` processes and wait until each polls the queue."""
        started = [self.worker(f"worker{i + 1}", wrap=wrap, **env) for i in range(count)]
        await wait_polling(self.queue_url, count, started, within=_start_timeout(wrap))
        return started

    @property
    def queue_url(self) -> str:
        """The Redis the gateway's processes share (the embedded one lives in DATA_DIR)."""
        return self.redis_url or EmbeddedRedis(self.data_dir).url

    @contextlib.asynccontextmanager
    async def sessions(self) -> AsyncIterator[SessionFactory]:
        """Database sessions for the benchmark's own setup (outside the timed part)."""
        engine = create_engine(load_settings(**self.overrides()).database)
        try:
            yield session_factory(engine)
        finally:
            await engine.dispose()

    def api(self, tenant: Tenant, *, timeout: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {tenant.api_key}"},
            timeout=timeout,
        )

    async def sandbox_creates(self) -> list[dict[str, Any]]:
        """Every Messages.create the sandbox received (with wall-clock `received`)."""
        auth = self.sandbox_auth
        async with httpx.AsyncClient(base_url=self.sandbox_url, auth=auth, timeout=60) as c:
            answer = await c.get("/_sandbox/record/requests", params={"kind": "messages.create"})
            answer.raise_for_status()
            entries: list[dict[str, Any]] = answer.json()
            return entries

    def stop_all(self) -> None:
        # Workers first, the web process last: it owns the embedded Redis.
        for service in reversed(self.services):
            service.stop()
        self.services.clear()


_GATEWAY_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "PORT",
    "PUBLIC_BASE_URL",
    "TWILIO_",
    "SMS_RATE_LIMITS",
    "INLINE_JOBS",
    "DATA_DIR",
    "LOG_LEVEL",
    "SMTP_URL",
    "ENVIRONMENT",
)


@contextlib.asynccontextmanager
async def target(database_url: str | None, redis_url: str | None = None) -> AsyncIterator[Target]:
    """A fresh run: a temp DATA_DIR and, on PostgreSQL, a scratch database on that server
    (created here, dropped afterwards), migrated. Every process is stopped on the way out."""
    _INDEXES.append(speed_index())
    data_dir = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    scratch: str | None = None
    if database_url:
        scratch = f"bench_{secrets.token_hex(4)}"
        await _pg_admin(database_url, f'CREATE DATABASE "{scratch}"')
        database_url = _with_database(database_url, scratch)
    run = Target(data_dir, database_url, redis_url)
    try:
        await upgrade_async(load_settings(**run.overrides()).database)
        yield run
    finally:
        run.stop_all()
        if scratch and database_url:
            await _pg_admin(database_url, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"kept {data_dir}", file=sys.stderr)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def _pg_admin(url: str, statement: str) -> None:
    parts = urlsplit(_with_database(url, "postgres"))
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, ""))
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@dataclass
class Tenant:
    account_id: str
    api_key: str
    number: str


async def create_tenant(run: Target, *, allow_private_webhooks: bool = False) -> Tenant:
    """An account with an API key and a sender number (before `gateway web` starts, so the
    built-in sandbox registers the number at startup)."""
    engine = create_engine(load_settings(**run.overrides()).database)
    try:
        async with transaction(session_factory(engine)) as session:
            account, issued = await accounts.create_account(session, "Bench Lending")
            session.add(SenderNumber(id=new_id("num"), account_id=account.id, number=OUR_NUMBER))
            if allow_private_webhooks:
                await set_private_allowed(session, account.id, True)
    finally:
        await engine.dispose()
    return Tenant(account.id, issued.secret, OUR_NUMBER)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every run against `target()` takes: where its database and Redis are."""
    parser.add_argument("--database-url", default=None, help="PostgreSQL server (default SQLite)")
    parser.add_argument("--redis-url", default=None, help="default: the embedded Redis")


def database_label(url: str | None) -> str:
    return "PostgreSQL" if url else "SQLite (embedded defaults)"
