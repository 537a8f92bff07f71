"""The console: server-rendered pages for the business's staff, served by the gateway under
`/console` (signed in with an API key; see `sessions` for how the sign-in is kept)."""

from __future__ import annotations

from gateway.console.pages import mount

__all__ = ["mount"]
