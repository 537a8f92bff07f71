"""Reply patterns: the one place they are compiled, on RE2 (linear-time matching).

A reply pattern is written by a playbook author and run against text any stranger can send to
the number, so it must not be able to backtrack: Python's `re` takes exponential time on
`(a+)+$` against "aaaa…!", and a lead's reply would hold the worker for seconds or forever.
RE2 matches in time linear in the text for every pattern it accepts; what it can't run
(backreferences `\\1`, lookaround `(?=` `(?!` `(?<=` `(?<!`, possessive and atomic groups) is
refused when the playbook is published.

Patterns are case-insensitive and searched anywhere in the reply (see matching.py). RE2's
`\\b`, `\\w` and `\\d` are ASCII; `\\pL`/`\\p{L}` and `\\pN` name Unicode letters and digits.

Playbooks published before RE2 may hold a pattern it can't run; at run time such a pattern
matches nothing (logged once per process), so the reply falls through to the next choice or
the catch-all instead of failing the job.
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

log = logging.getLogger(__name__)

CACHE_SIZE = 1024  # distinct patterns kept compiled; a playbook has a handful
# RE2 refuses a pattern whose compiled program would need more memory than this ("\pL{500}"
# is refused); 8 MiB is RE2's own default, stated here so it is a decision, not an accident.
MAX_PROGRAM_BYTES = 8 << 20


class CompiledPattern(Protocol):
    """What the engine needs from a compiled pattern (an RE2 `_Regexp`)."""

    def search(self, text: str) -> object | None: ...


def _options() -> object:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = MAX_PROGRAM_BYTES
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    return options


_OPTIONS = _options()


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(pattern: str) -> CompiledPattern | str:
    """The compiled pattern, or why RE2 can't run it (cached either way: patterns repeat)."""
    try:
        compiled: CompiledPattern = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return str(reason)
    return compiled


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` can't be used as a reply pattern, or None when it can."""
    found = _compile(pattern)
    if isinstance(found, str):
        return (
            f"RE2 can't run this pattern: {found} "
            "(no backreferences or lookaround; repetition up to {1000}; a bounded program size)"
        )
    return None


def compiled(pattern: str) -> CompiledPattern | None:
    """The compiled pattern, or None when RE2 can't run it."""
    found = _compile(pattern)
    return None if isinstance(found, str) else found


@functools.lru_cache(maxsize=CACHE_SIZE)
def _report_unrunnable(pattern: str) -> None:
    # Cached so a stored playbook's bad pattern is logged once, not on every reply.
    log.warning("reply pattern %r can't run on RE2; it matches nothing", pattern)


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` occurs in `text`; a pattern RE2 can't run matches nothing."""
    found = compiled(pattern)
    if found is None:
        _report_unrunnable(pattern)
        return False
    # RE2 reads UTF-8: a lone surrogate (possible in JSON-escaped text) would fail to encode.
    safe = text.encode("utf-8", "replace").decode("utf-8")
    return found.search(safe) is not None
