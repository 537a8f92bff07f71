"""`gateway run`, `web` and `worker`: the commands that serve (they import the whole app)."""

from __future__ import annotations

import argparse
import errno
import gc
import socket

import uvicorn

from gateway.app import create_app
from gateway.cli import CommandError
from gateway.redis_embedded import EmbeddedRedis
from gateway.settings import Settings
from gateway.worker import run_until_stopped

# Allocations between collections of the youngest generation (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def _settle_heap() -> None:
    """Once the app is built: what exists now (modules, tables, compiled statements, the
    playbook schema) lives as long as the process, so it goes to the collector's permanent
    generation (`gc.freeze`), and the youngest generation is collected less often. A request
    or a job allocates thousands of short-lived ORM objects; with the defaults the collector
    ran every few hundred allocations and, in the full collections, walked the whole app each
    time (4 % of the web process's samples under load)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, made before anything starts, so that "listening" is
    printed only when it is true and a taken port stops the command with one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a restart may bind while the last run's connections are in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog; connections wait there until startup
    except OSError as exc:
        sock.close()
        why = (
            "the address is already in use (another gateway? set PORT)"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        raise CommandError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def _serve(settings: Settings, host: str, *, run_worker: bool) -> int:
    sock = _bind(host, settings.port)
    app = create_app(settings, run_worker=run_worker)
    _settle_heap()
    config = uvicorn.Config(
        app,
        host=host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        proxy_headers=True,
    )
    database = (
        f"embedded SQLite in {settings.data_dir}" if settings.embedded_database else "DATABASE_URL"
    )
    redis = "embedded" if settings.redis_url is None else "REDIS_URL"
    twilio = "sandbox" if settings.uses_sandbox else "live"
    print(
        f"gateway listening on http://{host}:{settings.port} (public URL {settings.base_url}; "
        f"database {database}; redis {redis}; twilio {twilio}; "
        f"worker {'in this process' if run_worker else 'separate'})",
        flush=True,
    )
    if settings.uses_sandbox and settings.twilio_api_url is None:
        _print_sandbox_credentials(settings)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _print_sandbox_credentials(settings: Settings) -> None:
    creds = settings.sandbox_credentials
    print(
        f"twilio sandbox at {settings.base_url}/sandbox: account SID {creds.account_sid}, "
        f"auth token {creds.auth_token} (kept in {settings.data_dir}; "
        "`gateway sandbox credentials` shows them again)",
        flush=True,
    )


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    return _serve(settings, args.host, run_worker=True)


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    return _serve(settings, args.host, run_worker=False)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    embedded = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir).ensure()
        redis_url = embedded.url
    _settle_heap()
    try:
        run_until_stopped(settings, redis_url, burst=args.burst)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
