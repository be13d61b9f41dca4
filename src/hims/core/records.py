"""Writing domain records: one statement per write, with everything that must commit with it.

A domain repository writes its rows as a data-modifying CTE named ``w`` that returns the rows it
wrote (``id``, ``patient_id``, ``version``). `write` runs it in ONE statement together with the
parts that must commit or fail with those rows:

* the acting user, as the transaction setting ``hims.actor``, so the database's outside-write
  trigger (docs/audit.md) knows the application wrote the rows and does not log them again;
* the PHI access log rows of the write (``hims.audit.service.log_part``), one per row written;
* the record's views: what the composition root derives from a table's rows and keeps in the same
  statement (the FHIR rendering of a row: `RecordView`, installed by `hims.composition`).

Every part reads only rows of ``w``, so an optimistic update that wrote nothing (its version moved
on) logs nothing and renders nothing. One statement is atomic on its own: a write needs no
transaction unless the caller groups several (`atomic`).
"""

# SQL is assembled from our own table and column names; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.sqltypes import JSON

from hims.core.security import Actor

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]

#: A domain row as a repository hands it over: column name → value.
Row = dict[str, Any]


@dataclass(frozen=True)
class Part:
    """One CTE of a composed statement.

    ``sql(first)`` is its text with parameters numbered from ``$first``; ``args`` are those
    parameters in order. ``shape`` is a hashable description of everything ``sql`` depends on
    besides ``first``, so a composed statement's text is built once per shape (and asyncpg's
    prepared-statement cache sees the same text); None for a part whose text varies in ways a
    shape would not capture (never cached).
    """

    name: str
    sql: Callable[[int], str]
    args: Sequence[Any]
    shape: Any
    #: Computed once and read as is (else PostgreSQL may inline a CTE read once into its reader).
    materialized: bool = False


class RecordView(Protocol):
    """Something derived from a table's rows and written in the same statement as they are."""

    def parts(self, rows: Sequence[Row], *, deleting: bool) -> list[Part]:
        """The CTEs writing the view of ``rows`` (as they are after the write), gated on ``w``."""


_views: dict[str, RecordView] | None = None


def install_views(views: Mapping[str, RecordView]) -> None:
    """Set the views per table name (the composition root does this once, at start)."""
    global _views
    _views = dict(views)


def views_installed() -> bool:
    """Whether the composition root installed the record views."""
    return _views is not None


def view_of(table: str) -> RecordView | None:
    """The view of ``table``; raises when nothing was installed (a forgotten `hims.composition.wire`
    would otherwise silently stop rendering records)."""
    if _views is None:
        raise RuntimeError("record views are not installed: call hims.composition.wire() at start")
    return _views.get(table)


#: The CTE setting ``hims.actor``. A domain write reads it (a join with its one row) so the setting
#: is in place before the first row is written: the outside-write trigger's WHEN clause is checked
#: row by row as they are written, not at the end of the statement.
ACTOR = "hims_actor"


def actor_part(actor: Actor) -> Part:
    """``hims.actor`` for the rest of the transaction (of the statement, outside one)."""
    who = str(actor.user_id) if actor.user_id else f"system:{actor.username}"
    return Part(
        ACTOR,
        lambda first: f"SELECT set_config('hims.actor', ${first}::text, true) AS who",
        [who],
        "actor",
        materialized=True,
    )


def compose(parts: Sequence[Part], tail: str) -> tuple[str, list[Any]]:
    """``WITH <parts> <tail>`` and its parameters, numbered in part order."""
    cacheable = all(p.shape is not None for p in parts)
    key = (tuple((p.name, p.shape) for p in parts), tail)
    sql = _COMPOSED.get(key) if cacheable else None
    args: list[Any] = []
    if sql is None:
        texts = []
        for part in parts:
            keyword = "AS MATERIALIZED" if part.materialized else "AS"
            texts.append(f"{part.name} {keyword} ({part.sql(len(args) + 1)})")
            args.extend(part.args)
        sql = "WITH " + ",\n".join(texts) + "\n" + tail
        if cacheable and len(_COMPOSED) < 4096:
            _COMPOSED[key] = sql
        return sql, args
    for part in parts:
        args.extend(part.args)
    return sql, args


_COMPOSED: dict[Any, str] = {}


async def write(
    conn: asyncpg.Connection,
    actor: Actor,
    table: str,
    main: Part,
    rows: Sequence[Row],
    *,
    also: Sequence[Part] = (),
    deleting: bool = False,
) -> list[asyncpg.Record]:
    """Run ``main`` (the CTE ``w`` writing ``rows`` of ``table``), the parts in ``also`` (e.g. the
    PHI log) and the table's view in one statement; returns the rows ``w`` returned.

    ``rows`` are the rows as they will be after the write (the view renders them); ``deleting``
    says the write removes them from view (a delete, however the domain records it).
    """
    if main.name != "w":
        raise ValueError("the main part of a record write is the CTE named w")
    view = view_of(table)
    derived = view.parts(rows, deleting=deleting) if view is not None and rows else []
    # ``w`` reads the actor CTE (see ACTOR), which so runs first.
    parts = [actor_part(actor), main, *also, *derived]
    sql, args = compose(parts, "SELECT w.* FROM w")
    return list(await conn.fetch(sql, *args))


async def set_actor(conn: asyncpg.Connection, actor: Actor) -> None:
    """``hims.actor`` for the rest of the caller's transaction, for writes to patient data that are
    not composed by `write` (set-based moves such as a patient merge)."""
    part = actor_part(actor)
    await conn.execute(f"SELECT 1 FROM ({part.sql(1)}) s", *part.args)


@asynccontextmanager
async def atomic(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """Group the statements inside into one transaction, unless ``conn`` already is in one (then
    they are part of the caller's, which commits or rolls back as a whole)."""
    if conn.is_in_transaction():
        yield conn
        return
    async with conn.transaction():
        yield conn


# ------------------------------------------------------------------------------ table writes


def table_of(model: type[Any]) -> Table:
    """The Table of a declarative model (typed as such)."""
    table: Table = model.__table__
    return table


@functools.cache
def column_types(table: Table) -> dict[str, tuple[str, bool]]:
    """Column → (SQL type for an unnest array, whether the value travels as JSON text)."""
    out: dict[str, tuple[str, bool]] = {}
    for column in table.c:
        if isinstance(column.type, JSON):
            out[column.name] = ("text", True)
        else:
            out[column.name] = (column.type.compile(dialect=_DIALECT), False)
    return out


@functools.cache
def writable_columns(table: Table) -> tuple[str, ...]:
    """Columns an INSERT may name (generated columns are the database's)."""
    return tuple(c.name for c in table.c if c.computed is None)


def _arrays(table: Table, columns: Sequence[str], rows: Sequence[Row]) -> tuple[list[str], list[Any]]:
    """(``$n::type[]`` casts, one array of values per column)."""
    types = column_types(table)
    casts, arrays = [], []
    for name in columns:
        sql_type, as_json = types[name]
        values = [row.get(name) for row in rows]
        if as_json:
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        casts.append(sql_type)
        arrays.append(values)
    return casts, arrays


def _select_list(table: Table, columns: Sequence[str]) -> str:
    types = column_types(table)
    return ", ".join(f"u.{name}::jsonb" if types[name][1] else f"u.{name}" for name in columns)


def _unnest(casts: Sequence[str], columns: Sequence[str], first: int) -> str:
    params = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(casts))
    return f"unnest({params}) AS u({', '.join(columns)})"


def insert_part(
    table: Table,
    rows: Sequence[Row],
    *,
    returning: str,
    on_conflict: str = "",
) -> Part:
    """``w``: INSERT of ``rows`` (every writable column; values the rows lack are NULL), one array
    parameter per column. ``returning`` is the RETURNING list; ``on_conflict`` an optional
    ``ON CONFLICT ...`` clause."""
    columns = writable_columns(table)
    casts, arrays = _arrays(table, columns, rows)
    select = _select_list(table, columns)

    def sql(first: int) -> str:
        return (
            f"INSERT INTO {table.name} AS t ({', '.join(columns)}) "
            f"SELECT {select} FROM {_unnest(casts, columns, first)}, {ACTOR} {on_conflict} "
            f"RETURNING {returning}"
        )

    return Part("w", sql, arrays, ("insert", table.name, returning, on_conflict))


def update_part(
    table: Table,
    rows: Sequence[Row],
    *,
    columns: Sequence[str],
    returning: str,
    key: Sequence[str] = ("id",),
    version_column: str | None = "version",
) -> Part:
    """``w``: UPDATE setting ``columns`` of each row matched by ``key``; with ``version_column``,
    only where the row's version is the one before the row's (optimistic: a row whose version moved
    on is not written and not returned)."""
    names = list(dict.fromkeys([*key, *columns]))
    if version_column:
        names.append("hims_expected")
    payload = [{**row, "hims_expected": row[version_column] - 1} if version_column else row for row in rows]
    types = column_types(table)
    casts, arrays = [], []
    for name in names:
        if name == "hims_expected":
            casts.append("integer")
            arrays.append([p["hims_expected"] for p in payload])
            continue
        sql_type, as_json = types[name]
        values = [p.get(name) for p in payload]
        casts.append(sql_type)
        arrays.append(
            [None if v is None else orjson.dumps(v).decode() for v in values] if as_json else values
        )
    sets = ", ".join(
        f"{name} = u.{name}::jsonb" if types[name][1] else f"{name} = u.{name}" for name in columns
    )
    match = " AND ".join(f"t.{k} = u.{k}" for k in key)
    if version_column:
        match += f" AND t.{version_column} = u.hims_expected"

    def sql(first: int) -> str:
        return (
            f"UPDATE {table.name} AS t SET {sets} FROM {_unnest(casts, names, first)}, {ACTOR} "
            f"WHERE {match} RETURNING {returning}"
        )

    return Part(
        "w", sql, arrays, ("update", table.name, tuple(columns), returning, tuple(key), version_column)
    )


def delete_part(
    table: Table,
    rows: Sequence[Row],
    *,
    returning: str,
    key: Sequence[str] = ("id",),
    version_column: str | None = "version",
) -> Part:
    """``w``: DELETE of each row matched by ``key``; with ``version_column``, only where the row's
    version is the one before the row's (each row carries the version of its deletion, which its
    FHIR tombstone shows)."""
    names = list(key)
    types = column_types(table)
    casts = [types[name][0] for name in names]
    arrays: list[Any] = [[row[name] for row in rows] for name in names]
    match = " AND ".join(f"t.{k} = u.{k}" for k in key)
    if version_column:
        names.append("hims_expected")
        casts.append("integer")
        arrays.append([row[version_column] - 1 for row in rows])
        match += f" AND t.{version_column} = u.hims_expected"

    def sql(first: int) -> str:
        using = _unnest(casts, names, first)
        return f"DELETE FROM {table.name} AS t USING {using}, {ACTOR} WHERE {match} RETURNING {returning}"

    return Part("w", sql, arrays, ("delete", table.name, returning, tuple(key), version_column))


def any_of(column: str, number: int, values: Sequence[Any], sql_type: str) -> tuple[str, Any]:
    """(SQL, parameter): ``column`` matching ``values`` as parameter ``$number``.

    ``= $n`` for one value, ``= ANY($n)`` for more. PostgreSQL plans a statement with an array
    parameter anew on every execution (its generic plan, costed for an array of unknown length,
    loses to every custom plan), while ``= $n`` gets its generic plan cached after five runs;
    most lookups on the write path are of one row.
    """
    if len(values) == 1:
        return f"{column} = ${number}::{sql_type}", values[0]
    return f"{column} = ANY(${number}::{sql_type}[])", list(values)
