"""The `gateway` command: run the service, the worker, migrations, accounts and keys."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TextIO, TypeVar
from zoneinfo import ZoneInfo

import uvicorn
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance import quiet_hours
from gateway import accounts, logs, migrate, optouts
from gateway.app import create_app
from gateway.cli import demo
from gateway.clock import now
from gateway.db import create_engine, session_factory, transaction
from gateway.exports import encode
from gateway.models import Account
from gateway.phones import InvalidPhone, to_e164
from gateway.redis_embedded import EmbeddedRedis
from gateway.sandbox_credentials import read as read_sandbox_credentials
from gateway.settings import Settings, SettingsError, load_settings
from gateway.webhooks.addresses import set_private_allowed
from gateway.worker import run_until_stopped

T = TypeVar("T")


def _configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level)  # quiets the libraries that log URLs, tokens and headers


async def _with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    if settings.embedded_database:
        # A fresh machine has no schema yet; the embedded database migrates itself.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await migrate.upgrade_async(settings.database)
    engine = create_engine(settings.database)
    try:
        async with transaction(session_factory(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


def _serve(settings: Settings, host: str, *, run_worker: bool) -> int:
    app = create_app(settings, run_worker=run_worker)
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
    uvicorn.Server(config).run()
    return 0


def _print_sandbox_credentials(settings: Settings) -> None:
    creds = settings.sandbox_credentials
    print(
        f"twilio sandbox at {settings.base_url}/sandbox: account SID {creds.account_sid}, "
        f"auth token {creds.auth_token} (kept in {settings.data_dir}; "
        "`gateway sandbox credentials` shows them again)",
        flush=True,
    )


def cmd_sandbox_credentials(settings: Settings, args: argparse.Namespace) -> int:
    """The built-in sandbox's credentials for this DATA_DIR (curl -u SID:TOKEN)."""
    if not settings.uses_sandbox:
        print("error: Twilio credentials are configured; there is no sandbox", file=sys.stderr)
        return 1
    creds = settings.sandbox_credentials
    if args.curl:
        print(f"{creds.account_sid}:{creds.auth_token}")
    else:
        print(f"account SID {creds.account_sid}")
        print(f"auth token  {creds.auth_token}")
    return 0


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
    try:
        run_until_stopped(settings, redis_url, burst=args.burst)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def cmd_accounts_create(settings: Settings, args: argparse.Namespace) -> int:
    account, issued = asyncio.run(
        _with_session(settings, lambda s: accounts.create_account(s, args.name))
    )
    print(f"account {account.id} {account.name}")
    print(f"api key {issued.secret}")
    print("store the key now: it is shown only once", file=sys.stderr)
    return 0


def cmd_accounts_list(settings: Settings, args: argparse.Namespace) -> int:
    for account in asyncio.run(_with_session(settings, accounts.list_accounts)):
        print(f"{account.id}\t{account.created_at.isoformat()}\t{account.name}")
    return 0


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> accounts.IssuedKey | None:
        if await session.get(Account, args.account) is None:
            return None
        return await accounts.create_key(session, args.account, args.name)

    issued = asyncio.run(_with_session(settings, work))
    if issued is None:
        print(f"error: no account {args.account}", file=sys.stderr)
        return 1
    print(f"key {issued.key.id} {issued.secret}")
    print("store the key now: it is shown only once", file=sys.stderr)
    return 0


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    keys = asyncio.run(_with_session(settings, lambda s: accounts.list_keys(s, args.account)))
    for key in keys:
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        used = key.last_used_at.isoformat() if key.last_used_at else "never used"
        print(f"{key.id}\t{key.prefix}...\t{key.name}\t{state}\t{used}")
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    key = asyncio.run(_with_session(settings, lambda s: accounts.revoke_key(s, args.key_id)))
    if key is None:
        print(f"error: no key {args.key_id}", file=sys.stderr)
        return 1
    print(f"key {key.id} revoked")
    return 0


def _aware(text: str) -> datetime:
    """argparse type: an ISO-8601 instant with its offset (a bare date or time is ambiguous)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give an offset or Z, e.g. {text}Z")
    return value


def cmd_compliance_export(settings: Settings, args: argparse.Namespace) -> int:
    filters = optouts.LedgerFilter(since=args.since, until=args.until)

    async def export(out: TextIO) -> int:
        if settings.embedded_database:
            await migrate.upgrade_async(settings.database)
        engine = create_engine(settings.database)
        count = 0
        try:
            sessions = session_factory(engine)
            async with sessions() as session:
                if await session.get(Account, args.account) is None:
                    print(f"error: no account {args.account}", file=sys.stderr)
                    return 1
            async for chunk in encode(
                optouts.iterate(sessions, args.account, filters), args.format
            ):
                out.write(chunk)
                count += 1
        finally:
            await engine.dispose()
        events = count - 1 if args.format == "csv" else count
        print(f"wrote {events} ledger events to {args.output}", file=sys.stderr)
        return 0

    with open(args.output, "w", encoding="utf-8", newline="") as out:
        return asyncio.run(export(out))


def cmd_compliance_check(settings: Settings, args: argparse.Namespace) -> int:
    at = args.at or now()
    try:
        phone = to_e164(args.phone)
    except InvalidPhone as exc:
        print(f"error: {args.phone!r}: {exc}", file=sys.stderr)
        return 1
    decision = quiet_hours.check(
        phone, at, state=args.state, postal_code=args.postal_code, fallback_tz=args.timezone
    )
    print(f"phone     {phone}")
    print(f"at        {at.isoformat()}")
    print(f"allowed   {'yes' if decision.allowed else 'no'}")
    print(f"reason    {decision.reason}")
    nxt = (
        decision.next_allowed_at.isoformat() if decision.next_allowed_at else "none within 14 days"
    )
    print(f"next      {nxt}")
    for zone in decision.zones:
        print(
            f"zone      {zone}  local {at.astimezone(ZoneInfo(zone)).isoformat(timespec='minutes')}"
        )
    return 0


def cmd_webhooks_private(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> bool:
        if await session.get(Account, args.account) is None:
            return False
        await set_private_allowed(session, args.account, not args.off)
        return True

    if not asyncio.run(_with_session(settings, work)):
        print(f"error: no account {args.account}", file=sys.stderr)
        return 1
    state = "refused" if args.off else "allowed"
    print(f"private and loopback webhook addresses {state} for {args.account}")
    return 0


def cmd_demo_party_line(settings: Settings, args: argparse.Namespace) -> int:
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    scenario = demo.Scenario(
        lead_answers=args.lead_answers,
        reps=args.reps,
        first_rep=args.first_rep,
        rep_timeout=args.rep_timeout,
        talk=args.talk,
        timeout=args.timeout,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the demo tells its own story
    try:
        # Refuse before touching any database: no server, or a server without the sandbox.
        # Read only: a missing file is the sandbox refusing, not a new DATA_DIR made here.
        creds = read_sandbox_credentials(settings.data_dir)
        server_now = demo.check_server(url, creds)
        if creds is None:  # not reached: the sandbox refuses a request without them
            raise demo.DemoError("no sandbox credentials in this DATA_DIR")
        print(f"gateway demo: a party line on {url} (Twilio sandbox)", flush=True)
        key = args.key
        if key is None:
            # The same code path as `gateway accounts create`, on this machine's database.
            account, issued = asyncio.run(
                _with_session(settings, lambda s: accounts.create_account(s, "Party-line demo"))
            )
            key = issued.secret
            print(f"{'created':<11} account {account.id} with an API key", flush=True)
        return demo.party_line(
            url, key, scenario, creds=creds, server_now=server_now, out=sys.stdout
        )
    except demo.DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


Handler = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        help: str,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    run = command(commands, "run", cmd_run, "run the web app and the worker in one process")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    web = command(commands, "web", cmd_web, "run only the web app (Procfile `web`)")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    worker = command(commands, "worker", cmd_worker, "run only the job worker")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    mig = command(commands, "migrate", cmd_migrate, "apply database migrations")
    mig.add_argument("--revision", default="heads", help="target revision (default: all heads)")

    acc = commands.add_parser("accounts", help="manage accounts", description="manage accounts")
    acc_cmds = acc.add_subparsers(dest="accounts_command", required=True, metavar="COMMAND")
    create = command(
        acc_cmds, "create", cmd_accounts_create, "create an account and its first API key"
    )
    create.add_argument("name", help="the business's name")
    command(acc_cmds, "list", cmd_accounts_list, "list accounts")

    keys = commands.add_parser("keys", help="manage API keys", description="manage API keys")
    key_cmds = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    kc = command(key_cmds, "create", cmd_keys_create, "create an API key (printed once)")
    kc.add_argument("--account", required=True, help="account id")
    kc.add_argument("--name", default="default", help="a label for the key")
    kl = command(key_cmds, "list", cmd_keys_list, "list an account's keys")
    kl.add_argument("--account", required=True, help="account id")
    kr = command(key_cmds, "revoke", cmd_keys_revoke, "revoke an API key")
    kr.add_argument("key_id", help="key id (key_...)")

    comp = commands.add_parser(
        "compliance",
        help="compliance records and checks",
        description="compliance records and checks",
    )
    comp_cmds = comp.add_subparsers(dest="compliance_command", required=True, metavar="COMMAND")
    export = command(comp_cmds, "export", cmd_compliance_export, "export the opt-out ledger")
    export.add_argument("--account", required=True, help="account id")
    export.add_argument("--since", type=_aware, help="ISO-8601 instant, inclusive")
    export.add_argument("--until", type=_aware, help="ISO-8601 instant, exclusive")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--output", required=True, help="file to write")
    check = command(
        comp_cmds, "check", cmd_compliance_check, "may this phone be contacted now (quiet hours)?"
    )
    check.add_argument("phone", help="phone number, e.g. +14155550123")
    check.add_argument("--at", type=_aware, help="ISO-8601 instant (default now)")
    check.add_argument("--state", help="the lead's state (address)")
    check.add_argument("--postal-code", help="the lead's ZIP code")
    check.add_argument("--timezone", help="fallback IANA zone (the account's)")

    hooks = commands.add_parser(
        "webhooks", help="operator settings for webhooks", description="operator settings"
    )
    hook_cmds = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    private = command(
        hook_cmds,
        "allow-private",
        cmd_webhooks_private,
        "let an account send webhooks to loopback/private addresses (an on-premises CRM)",
    )
    private.add_argument("--account", required=True, help="account id")
    private.add_argument("--off", action="store_true", help="refuse them again")

    sandbox = commands.add_parser(
        "sandbox", help="the built-in Twilio sandbox", description="the built-in Twilio sandbox"
    )
    sandbox_cmds = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="COMMAND")
    creds = command(
        sandbox_cmds,
        "credentials",
        cmd_sandbox_credentials,
        "show the sandbox's account SID and auth token (random per DATA_DIR, kept there)",
    )
    creds.add_argument("--curl", action="store_true", help="print SID:TOKEN for `curl -u`")

    demos = commands.add_parser(
        "demo", help="demos against a running `gateway run`", description="demos"
    )
    demo_cmds = demos.add_subparsers(dest="demo_command", required=True, metavar="COMMAND")
    pl = command(
        demo_cmds,
        "party-line",
        cmd_demo_party_line,
        "call a scripted lead and reps on a running `gateway run` (sandbox) and tell each "
        "event, outcome and call leg as it happens",
    )
    pl.add_argument("--url", help="the running gateway (default http://127.0.0.1:$PORT)")
    pl.add_argument("--key", help="an API key to use (default: a new demo account)")
    pl.add_argument(
        "--lead-answers", choices=demo.LEAD_ANSWERS, default="human", help="default human"
    )
    pl.add_argument(
        "--reps", type=_int_in(1, demo.MAX_REPS), default=2, help="reps to try (default 2)"
    )
    pl.add_argument(
        "--first-rep",
        choices=demo.FIRST_REP,
        default="no-answer",
        help="what rep 1 does (default no-answer); the others answer and press 1",
    )
    pl.add_argument(
        "--rep-timeout", type=_int_in(5, 60), default=10, help="seconds a rep rings (default 10)"
    )
    pl.add_argument(
        "--talk", type=_seconds, default=5.0, help="seconds of talk before the rep hangs up"
    )
    pl.add_argument(
        "--timeout", type=_seconds, default=180.0, help="give up after this long (default 180)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    _configure_logging(settings)
    handler: Handler = args.handler
    return handler(settings, args)
