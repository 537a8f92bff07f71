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
# Loggers whose INFO lines come on every start whether anything happened or not (alembic's
# "Context impl SQLiteImpl."); the gateway says itself when a migration is applied.
ROUTINE_LOGGERS = ("alembic",)
ACCESS_LOGGER = "uvicorn.access"
ARQ_WORKER_LOGGER = "arq.worker"
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


class QuietIdleCron(logging.Filter):
    """arq logs every job's start ("→ work.sweep()") and end ("← work.sweep ● 0") at INFO: with
    two crons every 10 s, ~24 lines a minute that say nothing happened. A cron job's start, and
    its end when it returned 0 (our sweeps return how much they re-enqueued or fixed), become
    DEBUG; a sweep that did something keeps its INFO end line (and logs its own), and failures,
    retries and every other job keep arq's levels.

    arq names a cron job by its function alone and any other job "job_id:function", so a cron
    job is recognised without a list of names.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _idle_cron(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _idle_cron(record: logging.LogRecord) -> bool:
    args = record.args
    if not isinstance(args, tuple) or len(args) < 3 or not isinstance(args[1], str):
        return False
    if ":" in args[1]:  # "job_id:function": not a cron job
        return False
    message = str(record.msg)
    if "→" in message:  # started
        return True
    return "←" in message and args[2] == "0"  # finished, having done nothing


def quiet_idle_cron() -> None:
    """Idle cron runs at DEBUG on arq's worker logger (once, however often it is called)."""
    worker = logging.getLogger(ARQ_WORKER_LOGGER)
    if not any(isinstance(existing, QuietIdleCron) for existing in worker.filters):
        worker.addFilter(QuietIdleCron())


def configure(level: str) -> None:
    """Root logging at `level` to stderr; library loggers that leak secrets, and alembic's
    routine lines, quieted below DEBUG; idle cron runs at DEBUG; query strings out of the access
    log at every level."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    if level != "DEBUG":
        for name in (*CHATTY_LOGGERS, *ROUTINE_LOGGERS):
            logging.getLogger(name).setLevel(logging.WARNING)
    quiet_idle_cron()
    access = logging.getLogger(ACCESS_LOGGER)
    # A logger's filters survive uvicorn's own dictConfig (it only replaces handlers).
    if not any(isinstance(existing, RedactQuery) for existing in access.filters):
        access.addFilter(RedactQuery())
