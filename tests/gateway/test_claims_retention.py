"""Webhook claims are kept claims.RETENTION and then forgotten by the sweep, oldest first, a
bounded number per tick; a claim still pending is kept however old. The real sweep, database
and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from arq.connections import ArqRedis
from sqlmodel import col, select

from gateway import claims
from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.job_context import as_ctx
from gateway.models import WebhookClaim
from gateway.settings import Settings
from gateway.work.sweep import sweep
from gateway.worker import opened_job_context


async def _claim(
    sessions: SessionFactory, kind: str, key: str, age: timedelta, *, done: bool
) -> None:
    received = now() - age
    async with transaction(sessions) as session:
        session.add(
            WebhookClaim(
                kind=kind,
                key=key,
                params={"MessageSid": key},
                received_at=received,
                done_at=received if done else None,
            )
        )


async def _kept(sessions: SessionFactory) -> list[str]:
    async with sessions() as session:
        query = select(WebhookClaim.key).order_by(col(WebhookClaim.id))
        return list((await session.exec(query)).all())


async def test_the_sweep_forgets_old_done_claims_of_every_kind_and_keeps_the_rest(
    settings: Settings, sessions: SessionFactory, redis: ArqRedis
) -> None:
    old = claims.RETENTION + timedelta(hours=1)
    young = claims.RETENTION - timedelta(hours=1)
    await _claim(sessions, "sms_in", "old-text", old, done=True)
    await _claim(sessions, "voice_status", "old-call", old, done=True)
    await _claim(sessions, "sms_status", "old-but-pending", old, done=False)
    await _claim(sessions, "sms_status", "young", young, done=True)
    await _claim(sessions, "sms_in", "new", timedelta(0), done=True)
    async with opened_job_context(settings, sessions, redis) as jc:
        await sweep(as_ctx(jc))
    assert await _kept(sessions) == ["old-but-pending", "young", "new"]


async def test_a_tick_forgets_at_most_its_limit_oldest_first(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claims, "FORGET_LIMIT", 3)
    old = claims.RETENTION + timedelta(days=1)
    for n in range(5):
        await _claim(sessions, "sms_in", f"old-{n}", old, done=True)
    async with transaction(sessions) as session:
        assert await claims.forget_old(session, now()) == 3
    assert await _kept(sessions) == ["old-3", "old-4"]
    async with transaction(sessions) as session:
        assert await claims.forget_old(session, now()) == 2
    assert await _kept(sessions) == []
