"""`gateway demo party-line`: the command around `gateway/cli/demo.py`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from gateway import accounts
from gateway.cli import demo
from gateway.cli.common import with_session
from gateway.cli.demo_scenario import Scenario
from gateway.sandbox_credentials import read as read_sandbox_credentials
from gateway.settings import Settings


def cmd_demo_party_line(settings: Settings, args: argparse.Namespace) -> int:
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    scenario = Scenario(
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
                with_session(settings, lambda s: accounts.create_account(s, "Party-line demo"))
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
