"""Watching the real `claim_batches.take`: how many pending claims each take returned, for the
tests that say a burst is acted on a batch per transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gateway.jobs import claim_batches


@contextmanager
def watched_takes(monkeypatch: pytest.MonkeyPatch, kind: str) -> Iterator[list[int]]:
    """The size of each take of `kind` inside the block, in order (the take itself runs)."""
    sizes: list[int] = []
    take = claim_batches.take

    async def watched(
        session: Any, claim_kind: str, *args: Any, **kwargs: Any
    ) -> list[claim_batches.Taken]:
        taken = await take(session, claim_kind, *args, **kwargs)
        if claim_kind == kind:
            sizes.append(len(taken))
        return taken

    with monkeypatch.context() as patch:
        patch.setattr(claim_batches, "take", watched)
        yield sizes
