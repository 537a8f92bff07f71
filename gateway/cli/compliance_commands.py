"""`gateway compliance export` and `check`: the opt-out ledger, and the gate's answer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance.gate import GateDecision
from gateway import gate, optouts
from gateway.cli import CommandError
from gateway.cli.common import account_named, migrate_embedded, with_session
from gateway.clock import now
from gateway.db import create_engine, session_factory
from gateway.exports import encode
from gateway.models import Lead
from gateway.phones import InvalidPhone, to_e164
from gateway.settings import Settings

STDOUT = "-"
# `check`'s exit status: 0 contact allowed now, 1 refused (deferred or blocked), 2 no answer
# (a malformed phone, an unknown account), so a script can tell "no" from "could not ask".
ALLOWED, REFUSED, NO_ANSWER = 0, 1, 2


def cmd_compliance_export(settings: Settings, args: argparse.Namespace) -> int:
    filters = optouts.LedgerFilter(since=args.since, until=args.until)

    async def export(open_output: Callable[[], contextlib.AbstractContextManager[TextIO]]) -> int:
        await migrate_embedded(settings)
        engine = create_engine(settings.database)
        count = 0
        try:
            sessions = session_factory(engine)
            async with sessions() as session:
                await account_named(session, args.account)  # before any output exists
            with open_output() as out:
                rows = optouts.iterate(sessions, args.account, filters)
                async for chunk in encode(rows, args.format):
                    out.write(chunk)
                    count += 1
        finally:
            await engine.dispose()
        return count - 1 if args.format == "csv" else count  # the CSV header is no event

    if args.output == STDOUT:
        events = asyncio.run(export(lambda: contextlib.nullcontext(sys.stdout)))
        sys.stdout.flush()
        where = "standard output"
    else:
        events = asyncio.run(export(lambda: _replacing(Path(args.output))))
        where = args.output
    print(f"wrote {events} ledger events to {where}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file beside `path`, renamed to it only when the writing succeeded:
    a failed export leaves neither an empty nor a truncated file (nor clobbers an older one)."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def cmd_compliance_check(settings: Settings, args: argparse.Namespace) -> int:
    """What the gate would decide for a contact now (or --at): exit 0 allowed, 1 refused."""
    at = args.at or now()
    try:
        phone = to_e164(args.phone)
    except InvalidPhone as exc:
        print(f"error: {args.phone!r}: {exc}", file=sys.stderr)
        return NO_ANSWER

    async def work(session: AsyncSession) -> tuple[GateDecision, Lead | None]:
        account = await account_named(session, args.account)
        lead = (
            await session.exec(
                select(Lead).where(Lead.account_id == account.id, Lead.phone == phone)
            )
        ).first()
        # The gate's own decision, on every fact a send would give it (the ledger, consent
        # evidence, the account's window and zone, the contacts that count toward a cap); the
        # lead as the gate sees it, placed by --state/--postal-code where they are given.
        seen = Lead(
            id=lead.id if lead else "",
            account_id=account.id,
            phone=phone,
            state=args.state or (lead.state if lead else None),
            postal_code=args.postal_code or (lead.postal_code if lead else None),
        )
        decision = await gate.decide(
            session, account, phone, channel=args.channel, purpose="initiated", lead=seen, at=at
        )
        return decision, lead

    try:
        decision, lead = asyncio.run(with_session(settings, work))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NO_ANSWER
    allowed = decision.action == "allow"
    if allowed:
        nxt = at.isoformat()
    elif decision.until is not None:
        nxt = decision.until.isoformat()
    else:
        nxt = "none (blocked)"
    print(f"phone     {phone}")
    print(f"account   {args.account}")
    print(f"lead      {lead.id if lead else 'none on record'}")
    print(f"channel   {args.channel}")
    print(f"at        {at.isoformat()}")
    print(f"decision  {decision.action}")
    print(f"allowed   {'yes' if allowed else 'no'}")
    print(f"rule      {decision.reason}")
    if decision.detail:
        print(f"detail    {decision.detail}")
    print(f"next      {nxt}")
    for zone in decision.zones:
        print(
            f"zone      {zone}  local {at.astimezone(ZoneInfo(zone)).isoformat(timespec='minutes')}"
        )
    return ALLOWED if allowed else REFUSED
