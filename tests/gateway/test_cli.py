"""The `gateway` command: accounts, keys, compliance export and check, --help everywhere."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import optouts
from gateway.accounts import IssuedKey
from gateway.cli import main
from gateway.db import SessionFactory, transaction
from gateway.models import Channel, LedgerEvent, LedgerSource, WebhookPolicy


def gateway(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(cwd / "data")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["web"],
        ["worker"],
        ["migrate"],
        ["accounts"],
        ["accounts", "create"],
        ["accounts", "list"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["compliance", "export"],
        ["compliance", "check"],
        ["webhooks", "allow-private"],
    ],
)
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: gateway {' '.join(command)}".rstrip())


async def test_accounts_and_keys_commands(
    database_url: str, tmp_path: Path, sessions: SessionFactory
) -> None:
    created = gateway("accounts", "create", "Acme Lending", database_url=database_url, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    account_line, key_line = created.stdout.splitlines()
    account_id = account_line.split()[1]
    assert key_line.startswith("api key gw_")
    listed = gateway("accounts", "list", database_url=database_url, cwd=tmp_path)
    assert account_id in listed.stdout and "Acme Lending" in listed.stdout

    new_key = gateway(
        "keys",
        "create",
        "--account",
        account_id,
        "--name",
        "crm",
        database_url=database_url,
        cwd=tmp_path,
    )
    key_id = new_key.stdout.split()[1]
    revoked = gateway("keys", "revoke", key_id, database_url=database_url, cwd=tmp_path)
    assert revoked.stdout.strip() == f"key {key_id} revoked"
    keys = gateway("keys", "list", "--account", account_id, database_url=database_url, cwd=tmp_path)
    lines = keys.stdout.splitlines()
    assert len(lines) == 2
    assert any(key_id in line and "revoked" in line for line in lines)

    missing = gateway("keys", "revoke", "key_nope", database_url=database_url, cwd=tmp_path)
    assert missing.returncode == 1 and "no key key_nope" in missing.stderr


async def test_compliance_export_command(
    database_url: str, tmp_path: Path, sessions: SessionFactory, issued_key: IssuedKey
) -> None:
    account_id = issued_key.key.account_id
    async with transaction(sessions) as session:
        for day in (1, 10, 20):
            await optouts.record(
                session,
                account_id=account_id,
                phone="+14155550123",
                event=LedgerEvent.OPT_OUT,
                channel=Channel.SMS,
                source=LedgerSource.KEYWORD,
                received_at=datetime(2026, 11, day, 12, tzinfo=UTC),
                text="STOP",
            )
    out = tmp_path / "ledger.csv"
    result = gateway(
        "compliance",
        "export",
        "--account",
        account_id,
        "--since",
        "2026-11-05T00:00:00Z",
        "--until",
        "2026-11-30T00:00:00Z",
        "--format",
        "csv",
        "--output",
        str(out),
        database_url=database_url,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 ledger events" in result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["received_at"] for row in rows] == ["2026-11-10T12:00:00Z", "2026-11-20T12:00:00Z"]

    bad = gateway(
        "compliance",
        "export",
        "--account",
        account_id,
        "--since",
        "2026-11-05",
        "--output",
        str(out),
        database_url=database_url,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "give an offset or Z" in bad.stderr


def test_compliance_check_command(tmp_path: Path) -> None:
    result = gateway(
        "compliance",
        "check",
        "+15125550100",
        "--at",
        "2026-11-22T17:00:00Z",
        "--state",
        "TX",
        database_url="sqlite:///unused.db",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if " " in line)
    assert fields["allowed"] == "no"
    # Sunday 11:00 in Austin; Texas allows Sundays from 12:00, and a Texas address may be in
    # El Paso (Mountain time), so the earliest instant is 12:00 MST = 19:00 UTC.
    assert fields["next"] == "2026-11-22T19:00:00+00:00"
    assert "America/Chicago" in result.stdout and "America/Denver" in result.stdout
    invalid = gateway("compliance", "check", "12", database_url="sqlite:///u.db", cwd=tmp_path)
    assert invalid.returncode == 1 and "error:" in invalid.stderr


async def test_webhooks_allow_private_command(
    database_url: str, tmp_path: Path, sessions: SessionFactory, issued_key: IssuedKey
) -> None:
    account_id = issued_key.key.account_id
    allowed = gateway(
        "webhooks",
        "allow-private",
        "--account",
        account_id,
        database_url=database_url,
        cwd=tmp_path,
    )
    assert allowed.returncode == 0, allowed.stderr
    async with sessions() as session:
        policy = await session.get(WebhookPolicy, account_id)
    assert policy is not None and policy.allow_private_addresses
    refused = gateway(
        "webhooks",
        "allow-private",
        "--account",
        account_id,
        "--off",
        database_url=database_url,
        cwd=tmp_path,
    )
    assert "refused" in refused.stdout
    missing = gateway(
        "webhooks",
        "allow-private",
        "--account",
        "acct_nope",
        database_url=database_url,
        cwd=tmp_path,
    )
    assert missing.returncode == 1
