"""Webhook claims in tests: the keys still pending, and how many claims each take of the real
`claim_batches.take` returned (for the tests that say a burst is acted on a batch per
transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlmodel import col, select

from gateway.db import SessionFactory
from gateway.jobs import claim_batches
from gateway.models import WebhookClaim


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


async def pending_keys(sessions: SessionFactory, kind: str) -> list[str]:
    """The keys of the claims of `kind` still pending, oldest first."""
    async with sessions() as session:
        query = (
            select(WebhookClaim.key)
            .where(WebhookClaim.kind == kind, col(WebhookClaim.done_at).is_(None))
            .order_by(col(WebhookClaim.id))
        )
        return list((await session.exec(query)).all())
