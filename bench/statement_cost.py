"""Statement cost: the CPU of building a hot path's SQL statement on every call, against the
statement built once (issue 14 item 3).

    .venv/bin/python -m bench.statement_cost [--calls 5000]

SQLAlchemy compiles a statement once and caches the result, but finds the cached result by the
statement's cache key, which it computes by walking the statement: a statement built on every
call costs its construction and that walk every time, while one built once memoizes its key. For
each statement the gateway now builds once, this builds it afresh (the builder behind the
cache) and computes its key, `--calls` times, against the same for the statement built once.
Pure CPU in this process: no database, no I/O.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.sql.base import Executable

from gateway import gate, lead_number
from gateway.models import MessageStatus
from gateway.sms import sender, status


def _builders() -> dict[str, Callable[[], Any]]:
    """Each statement's builder, uncached: a call builds the statement anew."""
    facts = gate._facts_query  # built afresh on each call (`_facts` keeps what it built)
    lead_texts = sender._lead_texts_columns.__wrapped__
    return {
        "gate facts (consent, rule by play, last inbound)": lambda: facts(True, "play", True, None)[
            0
        ],
        "the same, with the lead's other texts": lambda: facts(
            True, "play", True, gate.Also("lead texts", lead_texts(False), {})
        )[0],
        "number the lead knows": lambda: lead_number._numbers_query.__wrapped__(True),
        "status move to accepted": lambda: status._move.__wrapped__(
            MessageStatus.ACCEPTED,
            frozenset({"status", "updated_at", "status_check_at", "twilio_sid", "num_segments"}),
        ),
    }


def per_call(make: Callable[[], Executable], calls: int) -> float:
    """Microseconds per call of `make()` and the cache key of what it returns."""
    started = time.process_time()
    for _ in range(calls):
        make()._generate_cache_key()  # type: ignore[attr-defined]
    return (time.process_time() - started) * 1e6 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    print(f"# statement cost, {args.calls} calls each, CPU time of this process")
    for name, build in _builders().items():
        once = build()
        fresh = per_call(build, args.calls)
        reused = per_call(lambda s=once: s, args.calls)
        print(f"{name:52} built per call {fresh:7.1f} us; built once {reused:5.2f} us")


if __name__ == "__main__":
    main()
