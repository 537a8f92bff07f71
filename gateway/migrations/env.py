"""Alembic environment: runs migrations over the gateway's async engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from typing import Any, Literal

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import gateway.models  # noqa: F401 - registers the tables on the metadata
from gateway.db import create_engine

config = context.config
target_metadata = SQLModel.metadata
# Alembic's own INFO lines ("Context impl SQLiteImpl.", "Will assume non-transactional DDL.")
# come on every command, migrated or not; gateway.logs quiets them, and this says what changed.
log = logging.getLogger("gateway.migrate")


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # SQLModel's AutoString is a plain String; rendering it as such keeps migrations free of
    # SQLModel internals.
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _applied(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """One INFO line per revision applied (alembic's on_version_apply hook, called by name)."""
    source = ", ".join(step.source_revision_ids) or "empty"
    target = ", ".join(step.destination_revision_ids) or "empty"
    # The revision is a Script (with the file's docstring) though typed as its base class.
    doc = str(getattr(step.up_revision, "doc", None) or "").strip().splitlines()
    verb = "applied" if step.is_upgrade else "reverted"
    log.info("migration %s: %s -> %s %s", verb, source, target, doc[0] if doc else "")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=_render_item,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can't ALTER most things
        compare_type=True,
        on_version_apply=_applied,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `gateway migrate`")
asyncio.run(_run_async())
