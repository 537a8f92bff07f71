"""Prism serving Twilio's published OpenAPI spec, for the contract test.

Prism comes from `npm ci` (package.json at the repo top); the spec from
shared/twilio-oai beside the repo, or $TWILIO_OAI_DIR.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PRISM = REPO_ROOT / "node_modules" / ".bin" / "prism"
SPEC_NAME = "twilio_api_v2010.json"
START_TIMEOUT_SECONDS = 30.0


def spec_dir() -> Path:
    override = os.environ.get("TWILIO_OAI_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "twilio-oai"


def patch_form_arrays(spec: dict[str, Any]) -> int:
    """Declare array form fields `style: form, explode: true`, as twilio-python sends
    them (repeated keys); Prism 5.14 rejects repeated keys otherwise. Returns the count."""
    patched = 0
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("application/x-www-form-urlencoded")
            if not form:
                continue
            properties = form.get("schema", {}).get("properties", {})
            encoding = form.setdefault("encoding", {})
            for name, schema in properties.items():
                if schema.get("type") == "array":
                    encoding[name] = {"style": "form", "explode": True}
                    patched += 1
    return patched


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def prism_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PRISM.exists():
        pytest.fail(
            f"Prism is not installed ({PRISM} is missing): run `npm ci` at the repo top "
            "(it installs @stoplight/prism-cli from package-lock.json).",
            pytrace=False,
        )
    source = spec_dir() / SPEC_NAME
    if not source.exists():
        pytest.fail(f"Twilio's OpenAPI spec not found at {source}; set TWILIO_OAI_DIR.")
    spec = json.loads(source.read_text())
    assert patch_form_arrays(spec) > 0
    work = tmp_path_factory.mktemp("prism")
    patched = work / SPEC_NAME
    patched.write_text(json.dumps(spec))
    port = free_port()
    log = (work / "prism.log").open("wb")
    process = subprocess.Popen(
        [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "--errors", str(patched)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"Prism did not start:\n{(work / 'prism.log').read_text()[-3000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
