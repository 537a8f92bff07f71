"""Logging for the gateway's processes: one line per event, and no secrets at INFO.

Libraries log more than ids: httpx logs every webhook delivery's URL (with whatever token the
customer put in its query), the twilio library logs each REST call's URL, parameters and
headers over ~10 lines, and uvicorn's access log prints query strings (phone numbers, keys).
Below DEBUG the first two are quieted and the access log keeps only the path.
"""

from __future__ import annotations

import logging
import sys

# Loggers that put URLs, parameters or headers into INFO lines. The gateway logs what it sent
# itself, with ids; LOG_LEVEL=DEBUG shows these again.
CHATTY_LOGGERS = (
    "httpx",
    "httpcore",
    "twilio.http_client",
    "twilio.async_http_client",
)
ACCESS_LOGGER = "uvicorn.access"
REDACTED_QUERY = "?…"


class RedactQuery(logging.Filter):
    """Replaces the query string of every path argument of a record (`/v1/leads?phone=...` ->
    `/v1/leads?…`); uvicorn's access log passes the path with its query as an argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, str) and arg.startswith("/") and "?" in arg:
        return arg.partition("?")[0] + REDACTED_QUERY
    return arg


def configure(level: str) -> None:
    """Root logging at `level` to stderr; library loggers that leak secrets quieted below DEBUG;
    query strings out of the access log at every level."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    if level != "DEBUG":
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    access = logging.getLogger(ACCESS_LOGGER)
    # A logger's filters survive uvicorn's own dictConfig (it only replaces handlers).
    if not any(isinstance(existing, RedactQuery) for existing in access.filters):
        access.addFilter(RedactQuery())
