"""Opaque, prefixed identifiers: the prefix tells a support engineer what kind of row it is."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A new id such as `acct_3f9c...` (128 random bits, hex)."""
    return f"{prefix}_{secrets.token_hex(16)}"
