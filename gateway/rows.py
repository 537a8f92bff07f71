"""New rows on hot paths: model objects built without the constructor's attribute events, and
written by a Core INSERT built once instead of the unit of work's flush."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from pydantic.fields import FieldInfo
from sqlalchemy import Insert, Table, insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

Model = TypeVar("Model", bound=SQLModel)

# How `fresh` fills a field the caller left out: its default as it is (an immutable value), or
# pydantic's default (a factory's new value, a copy of a mutable default).
_AS_IS = (type(None), bool, int, float, str)


def fresh(model: type[Model], **values: Any) -> Model:
    """A new `model` object holding `values` and, for every other field, its default: what
    `model(**values)` holds, built the way SQLAlchemy builds an object it loads (the instance
    with its state, then its dictionary) instead of one attribute event per field.

    Why: a table model's constructor sets each field through SQLModel's and SQLAlchemy's
    `__setattr__`, about 2.5 us a field: 86-89 us for a text (35 fields) and 66 us for a play,
    against 12 us built this way (bench/RESULTS.md §26). Nothing is validated, as the
    constructor of a table model validates nothing either. The object is transient:
    `insert_row` writes it, or `session.add` does at the next flush (the unit of work reads a
    new object's dictionary)."""
    unknown = values.keys() - model.model_fields.keys()
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    row: Model = model.__mapper__.class_manager.new_instance()  # type: ignore[attr-defined]
    held = row.__dict__
    for name, default in _defaults(model):
        if name in values:
            held[name] = values[name]
        else:
            held[name] = default()
    object.__setattr__(row, "__pydantic_fields_set__", set(values))
    return row


@cache
def _defaults(model: type[SQLModel]) -> tuple[tuple[str, Callable[[], Any]], ...]:
    """Each field of `model` with what makes its default (a required field's raises)."""
    return tuple(
        (name, _default_of(model, name, field)) for name, field in model.model_fields.items()
    )


def _default_of(model: type[SQLModel], name: str, field: FieldInfo) -> Callable[[], Any]:
    if field.is_required():

        def missing() -> Any:
            raise TypeError(f"{model.__name__}.{name} is required")

        return missing
    if field.default_factory is None and isinstance(field.default, _AS_IS):
        value = field.default
        return lambda: value
    return lambda: field.get_default(call_default_factory=True)


def column_values(row: Any) -> dict[str, Any]:
    """A model object's column values by column name, for a Core INSERT built once (the ORM's
    unit of work costs about twice as much per row). Every column's default is the model's
    (a pydantic default), so the object already holds it."""
    return {c.name: getattr(row, c.key) for c in row.__table__.columns}


async def insert_row(session: AsyncSession, row: Any, *, keep: bool = True) -> None:
    """Write `row` (a new model object) now, by a Core INSERT of every column built once per
    table. An id the database makes (an integer key left None) comes back from the INSERT
    itself and is set on the object.

    `keep`: the object stays in the session as a persistent one, as a flush would have left
    it: a change made to it later in the transaction is an UPDATE, and `session.get` finds it
    without a read. Otherwise it stays out (nothing changes it later; attaching costs CPU).
    About a fifth of the CPU of the unit of work's INSERT for one row (bench/RESULTS.md §25).
    Objects still pending in the session are written first (the session autoflushes before a
    Core statement too): the row may name them."""
    await insert_rows(session, [row], keep=keep)


async def insert_rows(
    session: AsyncSession, rows: Sequence[Any], *, keep: bool = False, by: str | None = None
) -> None:
    """`insert_row` for several new objects of one model, in one statement whatever their
    count: SQLAlchemy's "insertmanyvalues" writes them as one multi-row INSERT.

    `by`: for ids the database makes, a column whose values tell the rows apart, by which the
    ids that come back are matched to them (a multi-row INSERT promises no order for its
    RETURNING rows; asking SQLAlchemy for the parameters' order makes it write them one
    statement a row on SQLite)."""
    if not rows:
        return
    table = rows[0].__table__
    values = [column_values(row) for row in rows]
    key = _made_key(table)
    if key is not None and all(v[key] is None for v in values):
        for one in values:
            del one[key]
        if len(rows) == 1:
            made = await session.exec(_insert_returning(table, key), params=values[0])
            setattr(rows[0], key, made.scalar_one())
        else:
            if by is None:
                raise TypeError(f"several new {table.name} rows need `by` to match their ids")
            of = {getattr(row, by): row for row in rows}
            made = await session.exec(_insert_returning(table, key, by), params=values)
            for made_key, value in made.all():
                setattr(of[value], key, made_key)
    else:
        await session.exec(insert_into(table), params=values)
    if keep:
        for row in rows:
            make_transient_to_detached(row)
            session.add(row)


@cache
def _made_key(table: Table) -> str | None:
    """The name of `table`'s key when the database makes it (one integer column)."""
    [key, *more] = table.primary_key.columns
    return key.name if not more and key.autoincrement is not False and _integer(key) else None


def _integer(column: Any) -> bool:
    try:
        return column.type.python_type is int
    except NotImplementedError:
        return False


@cache
def insert_into(table: Table) -> Insert:
    """`INSERT INTO table`, its columns those of the parameters: built once per table."""
    return insert(table)


@cache
def _insert_returning(table: Table, key: str, by: str | None = None) -> Insert:
    if by is None:
        return insert(table).returning(table.c[key])
    return insert(table).returning(table.c[key], table.c[by])
