"""The `gateway` command: run the service, the worker, migrations, accounts and keys."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast

from gateway import logs
from gateway.cli.demo_scenario import FIRST_REP, LEAD_ANSWERS, MAX_REPS

if TYPE_CHECKING:
    from gateway.settings import Settings

# This module imports only the standard library and the demo's choices: `gateway --help` and a
# mistyped option answer at once. A command's handler is named "module:function" (a module of
# this package) and imported when the command runs, so each command imports only what it uses
# (the web app, the database layer, arq and the Twilio client cost seconds of CPU).
Handler = Callable[["Settings", argparse.Namespace], int]


class CommandError(Exception):
    """A command can't do what was asked; the message is one line for the user (exit 1)."""


def _handler(name: str) -> Handler:
    module, _, function = name.partition(":")
    return cast(Handler, getattr(importlib.import_module(f"gateway.cli.{module}"), function))


def _configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level)  # quiets the libraries that log URLs, tokens and headers


def _aware(text: str) -> datetime:
    """argparse type: an ISO-8601 instant with its offset (a bare date or time is ambiguous)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give an offset or Z, e.g. {text}Z")
    return value


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: str,
        help: str,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    run = command(
        commands, "run", "serving:cmd_run", "run the web app and the worker in one process"
    )
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    web = command(commands, "web", "serving:cmd_web", "run only the web app (Procfile `web`)")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    worker = command(commands, "worker", "serving:cmd_worker", "run only the job worker")
    worker.add_argument(
        "--burst", action="store_true", help="sweep once, then stop when the queue is empty"
    )
    mig = command(commands, "migrate", "admin:cmd_migrate", "apply database migrations")
    mig.add_argument("--revision", default="heads", help="target revision (default: all heads)")

    acc = commands.add_parser("accounts", help="manage accounts", description="manage accounts")
    acc_cmds = acc.add_subparsers(dest="accounts_command", required=True, metavar="COMMAND")
    create = command(
        acc_cmds,
        "create",
        "admin:cmd_accounts_create",
        "create an account and its first API key",
    )
    create.add_argument("name", help="the business's name")
    command(acc_cmds, "list", "admin:cmd_accounts_list", "list accounts")

    keys = commands.add_parser("keys", help="manage API keys", description="manage API keys")
    key_cmds = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    kc = command(key_cmds, "create", "admin:cmd_keys_create", "create an API key (printed once)")
    kc.add_argument("--account", required=True, help="account id")
    kc.add_argument("--name", default="default", help="a label for the key")
    kc.add_argument(
        "--scope",
        default="full",
        choices=["full", "read", "compliance"],
        help="what the key may do: full (everything), read (GET/HEAD only), compliance (the "
        "opt-out ledger, its export and a phone's opt-out status); default full",
    )
    kl = command(key_cmds, "list", "admin:cmd_keys_list", "list an account's keys")
    kl.add_argument("--account", required=True, help="account id")
    kr = command(key_cmds, "revoke", "admin:cmd_keys_revoke", "revoke an API key")
    kr.add_argument("key_id", help="key id (key_...)")

    comp = commands.add_parser(
        "compliance",
        help="compliance records and checks",
        description="compliance records and checks",
    )
    comp_cmds = comp.add_subparsers(dest="compliance_command", required=True, metavar="COMMAND")
    export = command(
        comp_cmds,
        "export",
        "compliance_commands:cmd_compliance_export",
        "export the opt-out ledger",
    )
    export.add_argument("--account", required=True, help="account id")
    export.add_argument("--since", type=_aware, help="ISO-8601 instant, inclusive")
    export.add_argument("--until", type=_aware, help="ISO-8601 instant, exclusive")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument(
        "--output", required=True, help="file to write (written whole or not at all); - for stdout"
    )
    check = command(
        comp_cmds,
        "check",
        "compliance_commands:cmd_compliance_check",
        "may the account contact this phone now? the gate's decision (opt-outs, consent, quiet "
        "hours, state rules, caps); exit 0 allowed, 1 refused, 2 no answer",
    )
    check.add_argument("phone", help="phone number, e.g. +14155550123")
    check.add_argument("--account", required=True, help="account id")
    check.add_argument("--channel", choices=("sms", "call"), default="sms", help="default sms")
    check.add_argument("--at", type=_aware, help="ISO-8601 instant (default now)")
    check.add_argument("--state", help="the lead's state (default: the lead's on record)")
    check.add_argument("--postal-code", help="the lead's ZIP code (default: the lead's on record)")

    hooks = commands.add_parser(
        "webhooks", help="operator settings for webhooks", description="operator settings"
    )
    hook_cmds = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    private = command(
        hook_cmds,
        "allow-private",
        "admin:cmd_webhooks_private",
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
        "admin:cmd_sandbox_credentials",
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
        "demo_command:cmd_demo_party_line",
        "call a scripted lead and reps on a running `gateway run` (sandbox) and tell each "
        "event, outcome and call leg as it happens",
    )
    pl.add_argument("--url", help="the running gateway (default http://127.0.0.1:$PORT)")
    pl.add_argument("--key", help="an API key to use (default: a new demo account)")
    pl.add_argument("--lead-answers", choices=LEAD_ANSWERS, default="human", help="default human")
    pl.add_argument("--reps", type=_int_in(1, MAX_REPS), default=2, help="reps to try (default 2)")
    pl.add_argument(
        "--first-rep",
        choices=FIRST_REP,
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
    handler = _handler(args.handler)
    # Imported here, not at the top: pydantic and the SMTP client are not needed for --help.
    settings_module = importlib.import_module("gateway.settings")
    try:
        settings = settings_module.load_settings()
    except settings_module.SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    _configure_logging(settings)
    try:
        return handler(settings, args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
