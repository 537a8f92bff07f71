"""The built-in sandbox's credentials: random per data directory, kept in a 0600 file there.

Generated on first use and reused on restart, so `gateway web`, a separate `gateway worker` and
the CLI on the same DATA_DIR agree on them without anything published or configured.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "sandbox-credentials.json"


@dataclass(frozen=True)
class SandboxCredentials:
    account_sid: str
    auth_token: str


def _generate() -> SandboxCredentials:
    return SandboxCredentials("AC" + secrets.token_hex(16), secrets.token_hex(16))


def read(data_dir: Path) -> SandboxCredentials | None:
    """The data directory's credentials if it has them (nothing is created)."""
    return _read(data_dir / FILE_NAME)


def _read(path: Path) -> SandboxCredentials | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SandboxCredentials(str(data["account_sid"]), str(data["auth_token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_or_create(data_dir: Path) -> SandboxCredentials:
    """The data directory's credentials, created (0600) the first time they are asked for."""
    path = data_dir / FILE_NAME
    found = _read(path)
    if found is not None:
        return found
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = _generate()
    # Written to a private temporary file, then linked into place: the link fails if another
    # process (web and worker starting together) got there first, and nobody reads half a file.
    temporary = data_dir / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump({"account_sid": fresh.account_sid, "auth_token": fresh.auth_token}, out)
        with contextlib.suppress(FileExistsError):  # the other process's file wins
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    stored = _read(path)
    if stored is None:
        raise OSError(f"{path} exists but does not hold sandbox credentials; remove it")
    return stored
