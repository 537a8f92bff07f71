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

# What `gateway --help` must not import: the app and the libraries under it cost seconds of CPU.
HEAVY_MODULES = ("gateway.app", "sqlalchemy", "starlette", "arq", "twilio", "sqlmodel", "alembic")


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


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    """`gateway --help` answers at once: it imports the parser, not the app (no timing here;
    which modules load is what makes it fast or slow)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gateway.cli", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: gateway")
    # -X importtime: one "import time: self | cumulative | module" line per module imported.
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "gateway.cli" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY_MODULES or m in HEAVY_MODULES)
    assert heavy == []


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


def test_keys_create_with_a_scope_and_list_shows_it(database_url: str, tmp_path: Path) -> None:
    created = gateway("accounts", "create", "Acme", database_url=database_url, cwd=tmp_path)
    account_id = created.stdout.split()[1]
    scoped = gateway(
        "keys", "create", "--account", account_id, "--scope", "compliance",
        database_url=database_url, cwd=tmp_path,
    )  # fmt: skip
    assert scoped.returncode == 0, scoped.stderr
    key_id = scoped.stdout.split()[1]
    keys = gateway("keys", "list", "--account", account_id, database_url=database_url, cwd=tmp_path)
    scopes = {line.split("\t")[0]: line.split("\t")[3] for line in keys.stdout.splitlines()}
    assert scopes[key_id] == "compliance"
    assert sorted(scopes.values()) == ["compliance", "full"]  # the account's first key is full
    wrong = gateway(
        "keys", "create", "--account", account_id, "--scope", "admin",
        database_url=database_url, cwd=tmp_path,
    )  # fmt: skip
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "list"],
        ["keys", "create"],
        ["webhooks", "allow-private"],
        ["compliance", "export", "--output", "ledger.csv"],
    ],
)
def test_an_unknown_account_is_an_error(
    command: list[str], database_url: str, tmp_path: Path
) -> None:
    """Every command taking --account says so when there is no such account, and exits 1."""
    result = gateway(*command, "--account", "acct_nope", database_url=database_url, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: no account acct_nope"]
    assert result.stdout == ""
    # The export checks the account before writing anything: no file, empty or otherwise.
    assert not (tmp_path / "ledger.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ledger.csv")]


def test_commands_are_quiet_when_nothing_happens(database_url: str, tmp_path: Path) -> None:
    """Migrations log a line per revision applied, and nothing (alembic's "Context impl
    SQLiteImpl." included) once the database is up to date."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO")

    def accounts_list() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "accounts", "list"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = accounts_list()  # the embedded database is created and migrated
    assert first.returncode == 0, first.stderr
    assert "migration applied: empty -> 0001" in first.stderr
    assert "alembic" not in first.stderr
    again = accounts_list()
    assert again.returncode == 0 and again.stderr == ""


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

    # "-" is standard output, not a file named "-".
    to_stdout = gateway(
        "compliance",
        "export",
        "--account",
        account_id,
        "--format",
        "jsonl",
        "--output",
        "-",
        database_url=database_url,
        cwd=tmp_path,
    )
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert len(to_stdout.stdout.splitlines()) == 3
    assert "wrote 3 ledger events to standard output" in to_stdout.stderr
    assert not (tmp_path / "-").exists()


def _fields(stdout: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in stdout.splitlines() if " " in line)


async def test_compliance_check_command(
    database_url: str, tmp_path: Path, sessions: SessionFactory, issued_key: IssuedKey
) -> None:
    """The gate's own decision for the account: quiet hours and state rules, the opt-out
    ledger; exit 0 allowed, 1 refused, 2 when it can't answer."""
    account_id = issued_key.key.account_id

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return gateway(
            "compliance",
            "check",
            *args,
            "--account",
            account_id,
            database_url=database_url,
            cwd=tmp_path,
        )

    result = check("+15125550100", "--at", "2026-11-22T17:00:00Z", "--state", "TX")
    assert result.returncode == 1, result.stderr
    fields = _fields(result.stdout)
    assert fields["allowed"] == "no" and fields["decision"] == "defer"
    # Sunday 11:00 in Austin; Texas allows Sundays from 12:00, and a Texas address may be in
    # El Paso (Mountain time), so the earliest instant is 12:00 MST = 19:00 UTC.
    assert fields["next"] == "2026-11-22T19:00:00+00:00"
    assert fields["rule"] == "state_rule:TX"
    assert "America/Chicago" in result.stdout and "America/Denver" in result.stdout

    allowed = check("+15125550100", "--at", "2026-11-23T17:00:00Z", "--state", "TX")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert _fields(allowed.stdout)["allowed"] == "yes"

    async with transaction(sessions) as session:
        await optouts.record(
            session,
            account_id=account_id,
            phone="+15125550100",
            event=LedgerEvent.OPT_OUT,
            channel=Channel.SMS,
            source=LedgerSource.KEYWORD,
            received_at=datetime(2026, 11, 1, 12, tzinfo=UTC),
            text="STOP",
        )
    opted_out = check("+15125550100", "--at", "2026-11-23T17:00:00Z", "--state", "TX")
    assert opted_out.returncode == 1
    fields = _fields(opted_out.stdout)
    assert (fields["decision"], fields["rule"]) == ("block", "opted_out")

    invalid = check("12")
    assert invalid.returncode == 2 and "error:" in invalid.stderr
    unknown = gateway(
        "compliance",
        "check",
        "+15125550100",
        "--account",
        "acct_nope",
        database_url=database_url,
        cwd=tmp_path,
    )
    assert unknown.returncode == 2 and "no account acct_nope" in unknown.stderr


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
