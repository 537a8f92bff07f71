"""Settings: defaults, Heroku-style URLs, and one clear line per bad variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings, normalize_database_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "PORT",
        "PUBLIC_BASE_URL",
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "DATA_DIR",
        "LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_use_embedded_sqlite_and_sandbox(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.database == f"sqlite+aiosqlite:///{tmp_path / '.data' / 'gateway.db'}"
    assert settings.embedded_database and settings.uses_sandbox
    assert settings.redis_url is None
    assert settings.base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example:5432/app", "postgresql+asyncpg://u:p@db.example:5432/app"),
        ("postgresql://u@h/app", "postgresql+asyncpg://u@h/app"),
        ("sqlite:////var/gw.db", "sqlite+aiosqlite:////var/gw.db"),
    ],
)
def test_database_urls_are_normalized(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    settings = load_settings()
    assert settings.database == expected
    assert not settings.embedded_database


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://gw.example.com/")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret")
    settings = load_settings()
    assert settings.port == 9001
    assert settings.base_url == "https://gw.example.com"
    assert settings.log_level == "DEBUG"
    assert not settings.uses_sandbox


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: unsupported scheme 'mysql'"),
        ("DATABASE_URL", "not a url", "DATABASE_URL: must look like"),
        ("REDIS_URL", "http://localhost", "REDIS_URL: must start with redis://"),
        ("PORT", "eighty", "PORT: Input should be a valid integer"),
        ("PORT", "70000", "PORT: Input should be less than or equal to 65535"),
        ("PUBLIC_BASE_URL", "gw.example.com", "PUBLIC_BASE_URL: must be an absolute http(s) URL"),
        ("TWILIO_ACCOUNT_SID", "XY123", "TWILIO_ACCOUNT_SID: must be a Twilio Account SID"),
        ("TWILIO_ACCOUNT_SID", "AC" + "1" * 32, "TWILIO_AUTH_TOKEN must be set together"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL: Input should be 'DEBUG'"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert text.startswith("configuration error: ")
    assert message in text
    assert "\n" not in text


def test_normalize_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported scheme"):
        normalize_database_url("oracle://x")


def test_cli_reports_bad_setting_in_one_line_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "mysql://nope", "DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: DATABASE_URL: unsupported scheme 'mysql' "
        "(use postgresql:// or sqlite:///)"
    ]
    assert "Traceback" not in result.stderr
