"""The built-in sandbox never serves production, its credentials are random per DATA_DIR
(kept there, 0600, the same after a restart), and it calls back only the gateway's own URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings, SettingsError, load_settings

TWILIO_VARS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_URL", "ENVIRONMENT")


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in TWILIO_VARS}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**clean, "DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


@pytest.mark.parametrize("command", ["web", "run", "worker"])
def test_production_without_twilio_credentials_refuses_to_start(
    tmp_path: Path, command: str
) -> None:
    done = _cli(tmp_path, command, ENVIRONMENT="production", PORT="1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "configuration error: ENVIRONMENT=production requires TWILIO_ACCOUNT_SID and "
        "TWILIO_AUTH_TOKEN (the built-in Twilio sandbox is for development only)"
    ]
    assert not (tmp_path / "data").exists()  # no sandbox credentials were made either


def test_production_with_twilio_credentials_has_no_sandbox(tmp_path: Path) -> None:
    settings = load_settings(
        environment="production",
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="f" * 32,
        data_dir=tmp_path / "data",
        _env_file=None,
    )
    assert not settings.uses_sandbox and settings.twilio_api_base_url is None
    with pytest.raises(SettingsError):
        load_settings(environment="production", data_dir=tmp_path / "data", _env_file=None)


def test_credentials_are_per_data_dir_and_kept_across_restarts(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = _cli(tmp_path / "one", "sandbox", "credentials", "--curl")
    again = _cli(tmp_path / "one", "sandbox", "credentials", "--curl")
    other = _cli(tmp_path / "two", "sandbox", "credentials", "--curl")
    assert first.returncode == again.returncode == other.returncode == 0, first.stderr
    sid, token = first.stdout.strip().split(":")
    assert sid.startswith("AC") and len(sid) == 34 and len(token) == 32
    assert again.stdout == first.stdout
    assert other.stdout != first.stdout
    assert "5a5a5a5a" not in first.stdout and "sandbox-auth-token" not in first.stdout
    stored = tmp_path / "one" / "data" / "sandbox-credentials.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    # What the gateway's processes use is that file's, through their settings.
    settings = Settings(data_dir=tmp_path / "one" / "data", _env_file=None)
    assert (settings.twilio_sid, settings.twilio_token) == (sid, token)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data",
        "http://testserver.evil.example/twilio/sms",
        "http://testserver@127.0.0.1/twilio/sms",
        "http://testserver:8080/twilio/sms",
        "https://testserver/twilio/sms",
        "http://testserver/twilio/../../admin",
        "http://testserver/twilio/%2e%2e/admin",
    ],
)
def test_control_api_refuses_callbacks_outside_the_gateway(
    client: TestClient, settings: Settings, url: str
) -> None:
    auth = (settings.twilio_sid, settings.twilio_token)
    number = "+18085550100"
    for field in ("sms_url", "voice_url", "voice_status_callback"):
        refused = client.post(
            "/sandbox/_sandbox/numbers", json={"number": number, field: url}, auth=auth
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == 21205
    sandbox = client.app_state["sandbox"]
    assert number not in sandbox.numbers


def test_control_api_accepts_the_gateways_own_routes(
    client: TestClient, settings: Settings
) -> None:
    auth = (settings.twilio_sid, settings.twilio_token)
    accepted = client.post(
        "/sandbox/_sandbox/numbers",
        json={"number": "+18085550100", "sms_url": "http://testserver/twilio/sms"},
        auth=auth,
    )
    assert accepted.status_code == 200, accepted.text


def test_app_without_credentials_gets_this_data_dirs_sandbox(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        old = ("AC" + "5a" * 16, "sandbox-auth-token")
        path = f"/sandbox/2010-04-01/Accounts/{old[0]}/Messages.json"
        assert client.get(path, auth=old).status_code == 401
        mine = (settings.twilio_sid, settings.twilio_token)
        path = f"/sandbox/2010-04-01/Accounts/{mine[0]}/Messages.json"
        assert client.get(path, auth=mine).status_code == 200
