"""The registry of job functions: each registers beside its definition with `@job(kind, ...)`,
together with the due query that lets the sweep find its work again, and the worker runs
whatever is registered (`functions()`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from arq import func
from arq.typing import WorkerCoroutine
from arq.worker import Function
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.work.kinds import Kind

# The sweep's question to a kind: the (job id, argument) of every row that owes a job at
# `moment`, at most `limit` of them, most overdue first. Read-only; `Tidy` may write first.
Due = Callable[[AsyncSession, datetime, int], Awaitable[Sequence[tuple[str, str]]]]
# Housekeeping a kind does in a transaction before its due query (e.g. dead-lettering webhook
# deliveries whose retry window ended); returns how many rows it changed.
Tidy = Callable[[AsyncSession, datetime], Awaitable[int]]

JobFunction = TypeVar("JobFunction", bound=Callable[..., Awaitable[Any]])
# A drain's work for some of its rows only, named by their own kind's arguments (the texts one
# commit queued for an account): the job's dict, the drain's argument, the rows' arguments.
Together = Callable[[dict[str, Any], str, Sequence[str]], Awaitable[Any]]


@dataclass(frozen=True)
class Registered:
    kind: Kind
    function: Function
    due: Due | None
    tidy: Tidy | None
    inline: bool
    together: Together | None = None


_REGISTRY: dict[str, Registered] = {}


def job(
    kind: Kind,
    *,
    due: Due | None = None,
    tidy: Tidy | None = None,
    max_tries: int | None = None,
    inline: bool = False,
    together: Together | None = None,
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated coroutine as the job that does `kind`.

    `due`: how the sweep finds the rows that owe this job (none: the job's work is never lost
    with Redis, e.g. marking an API key used, or the due query of its drain finds it,
    `Kind.batched_by`). `max_tries`: for jobs that wait by arq Retry (a rate slot, an earlier
    delivery); their rows count the real attempts. `inline`: when due now, run by the process
    whose commit staged it (`gateway.work.inline`), for the work a lead waits on. `together`:
    for a drain (`Kind.drains`), how an inline runner does its work for the rows one commit
    made due at once, together, rather than in a job of their own each
    (`gateway.work.inline`)."""

    def register(function: JobFunction) -> JobFunction:
        known = _REGISTRY.get(kind.name)
        if known is not None and known.function.coroutine is not function:
            raise ValueError(f"two functions registered for the job {kind.name!r}")
        # keep_result=0 frees the job id at once, so the same id can be enqueued again.
        entry = func(
            cast(WorkerCoroutine, function), name=kind.name, keep_result=0, max_tries=max_tries
        )
        _REGISTRY[kind.name] = Registered(kind, entry, due, tidy, inline, together)
        return function

    return register


def registered() -> list[Registered]:
    """Every registered job, in registration order."""
    return list(_REGISTRY.values())


def functions() -> list[Function]:
    """The arq functions of every registered job (the worker's `functions`)."""
    return [entry.function for entry in _REGISTRY.values()]
