"""The README's quickstart on a real `gateway run` (subprocess, embedded defaults, built-in
sandbox): register +18085550100, text it from a lead through the sandbox's control API with the
credentials `gateway run` prints (random per DATA_DIR, the same after a restart), and see the
text arrive. The sandbox's old published credentials open nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.e2e.test_demo import gateway, gateway_run

OUR_NUMBER = "+18085550100"
LEAD = "+18085550123"
PRINTED = re.compile(r"account SID (AC[0-9a-f]{32}), auth token ([0-9a-f]{32})")
OLD_PUBLISHED = ("AC" + "5a" * 16, "sandbox-auth-token")


def _printed(log: Path) -> tuple[str, str]:
    found = PRINTED.search(log.read_text())
    assert found is not None, log.read_text()[-2000:]
    return found.group(1), found.group(2)


def test_quickstart_texts_a_registered_number_with_the_printed_credentials(
    tmp_path: Path,
) -> None:
    with gateway_run(tmp_path) as (url, env, log):
        created = gateway(env, tmp_path, "accounts", "create", "Acme Lending")
        key = created.stdout.split("api key ")[1].split()[0]
        auth_header = {"Authorization": f"Bearer {key}"}
        number = httpx.post(f"{url}/v1/numbers", json={"number": OUR_NUMBER}, headers=auth_header)
        assert number.status_code == 201, number.text

        creds = _printed(log)
        shown = gateway(env, tmp_path, "sandbox", "credentials", "--curl")
        assert shown.returncode == 0 and shown.stdout.strip() == ":".join(creds)
        stored = tmp_path / "data" / "sandbox-credentials.json"
        assert stored.stat().st_mode & 0o777 == 0o600

        control = f"{url}/sandbox/_sandbox/sms"
        text = {"from": LEAD, "to": OUR_NUMBER, "body": "hello"}
        refused = httpx.post(control, json=text, auth=OLD_PUBLISHED)
        assert refused.status_code == 401
        messages = f"{url}/sandbox/2010-04-01/Accounts/{OLD_PUBLISHED[0]}/Messages.json"
        assert httpx.get(messages, auth=OLD_PUBLISHED).status_code == 401

        sent = httpx.post(control, json=text, auth=creds)
        assert sent.status_code == 200, sent.text
        # Real time: the sandbox's callback reaches the gateway shortly; wait on the record.
        settle = httpx.post(f"{url}/sandbox/_sandbox/settle", json={}, auth=creds, timeout=30)
        assert settle.status_code == 200
        # The webhook appended the text; the worker's inbox job records it a moment later.
        inbound: list[dict[str, str]] = []
        deadline = time.monotonic() + 10
        while not inbound and time.monotonic() < deadline:
            listed = httpx.get(f"{url}/v1/messages", params={"phone": LEAD}, headers=auth_header)
            inbound = [m for m in listed.json()["data"] if m["direction"] == "inbound"]
            time.sleep(0.05)
        assert [m["body"] for m in inbound] == ["hello"]

    # The same DATA_DIR after a restart: the same credentials.
    with gateway_run(tmp_path) as (_url, _env, log):
        assert _printed(log) == creds
