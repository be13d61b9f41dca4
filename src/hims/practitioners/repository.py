"""All SQL of facilities, departments and practitioners, on the driver connection (asyncpg).

Writes go through `hims.core.records.write`: one statement with the record's views (its FHIR
rendering). These records are not patient data, so neither writes nor reads log PHI access.
"""

# SQL is assembled from fixed fragments and our table and column names; every value is a bound
# parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Table

from hims.core import records
from hims.core.errors import Conflict
from hims.core.records import Row
from hims.core.security import Actor
from hims.practitioners.models import Department, Facility, Practitioner

FACILITIES: Table = Facility.__table__  # type: ignore[assignment]
DEPARTMENTS: Table = Department.__table__  # type: ignore[assignment]
PRACTITIONERS: Table = Practitioner.__table__  # type: ignore[assignment]
#: Every stored column, per table.
COLUMNS = {t.name: records.writable_columns(t) for t in (FACILITIES, DEPARTMENTS, PRACTITIONERS)}
#: What `write` returns of each row written.
RETURNING = "t.id, t.version"
#: Unique constraints whose violation means a code is taken (a concurrent write took it first).
_CODE_CONSTRAINTS = {
    "uq_facilities_code": "A facility with this code exists.",
    "uq_departments_facility_code": "A department with this code exists in this facility.",
}


def _select(table: Table) -> str:
    return f"SELECT {', '.join(COLUMNS[table.name])} FROM {table.name}"


async def get(conn: asyncpg.Connection, table: Table, row_id: uuid.UUID, *, lock: bool = False) -> Row | None:
    """One row of ``table`` by id (any state)."""
    found = await conn.fetchrow(_select(table) + " WHERE id = $1" + (" FOR UPDATE" if lock else ""), row_id)
    return dict(found) if found is not None else None


async def get_many(
    conn: asyncpg.Connection, table: Table, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Rows of ``table`` by id (any state), locked in id order when ``lock`` (no deadlock between
    two transactions locking the same rows)."""
    if not ids:
        return {}
    match, value = records.any_of("id", 1, sorted(set(ids)), "uuid")
    sql = f"{_select(table)} WHERE {match} ORDER BY id" + (" FOR UPDATE" if lock else "")
    return {r["id"]: dict(r) for r in await conn.fetch(sql, value)}


async def facility_code_holders(conn: asyncpg.Connection, codes: Sequence[str]) -> dict[str, uuid.UUID]:
    """code → id of the facilities holding these codes."""
    if not codes:
        return {}
    match, value = records.any_of("code", 1, sorted(set(codes)), "varchar")
    rows = await conn.fetch(f"SELECT code, id FROM facilities WHERE {match}", value)
    return {r["code"]: r["id"] for r in rows}


async def department_code_holders(
    conn: asyncpg.Connection, keys: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """(facility_id, code) → id of the departments holding these codes in these facilities."""
    if not keys:
        return {}
    unique = sorted(set(keys))
    rows = await conn.fetch(
        "SELECT d.facility_id, d.code, d.id FROM departments d "
        "JOIN unnest($1::uuid[], $2::varchar[]) AS k(facility_id, code) "
        "ON d.facility_id = k.facility_id AND d.code = k.code",
        [k[0] for k in unique],
        [k[1] for k in unique],
    )
    return {(r["facility_id"], r["code"]): r["id"] for r in rows}


def _code_taken(exc: asyncpg.IntegrityConstraintViolationError) -> Conflict | None:
    message = _CODE_CONSTRAINTS.get(getattr(exc, "constraint_name", None) or "")
    return Conflict(message, code="duplicate_code") if message else None


async def insert(conn: asyncpg.Connection, actor: Actor, table: Table, rows: Sequence[Row]) -> None:
    """Insert complete rows into ``table`` (409 ``duplicate_code`` when a code was taken meanwhile)."""
    main = records.insert_part(table, rows, returning=RETURNING)
    try:
        await records.write(conn, actor, table.name, main, rows)
    except asyncpg.IntegrityConstraintViolationError as exc:
        conflict = _code_taken(exc)
        if conflict is None:
            raise
        raise conflict from None


async def update(
    conn: asyncpg.Connection,
    actor: Actor,
    table: Table,
    rows: Sequence[Row],
    *,
    columns: Sequence[str] | None = None,
    deleting: bool = False,
) -> set[uuid.UUID]:
    """Write new versions of rows of ``table`` (each row's ``version`` is the new one; a row whose
    stored version is not the one before is not written); returns the ids written."""
    changed = columns or [c for c in COLUMNS[table.name] if c not in ("id", "created_at")]
    main = records.update_part(table, rows, columns=changed, returning=RETURNING)
    try:
        written = await records.write(conn, actor, table.name, main, rows, deleting=deleting)
    except asyncpg.IntegrityConstraintViolationError as exc:
        conflict = _code_taken(exc)
        if conflict is None:
            raise
        raise conflict from None
    return {r["id"] for r in written}


# ------------------------------------------------------------------------------ lists


async def list_facilities(
    conn: asyncpg.Connection, *, active: bool | None, limit: int, offset: int
) -> list[Row]:
    """Facilities by name."""
    where = "" if active is None else " WHERE active = $3"
    args: list[Any] = [limit, offset] + ([] if active is None else [active])
    sql = f"{_select(FACILITIES)}{where} ORDER BY name, id LIMIT $1 OFFSET $2"
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def list_departments(
    conn: asyncpg.Connection, facility_id: uuid.UUID, *, active: bool | None
) -> list[Row]:
    """A facility's departments by name."""
    where = " AND active = $2" if active is not None else ""
    args: list[Any] = [facility_id] + ([] if active is None else [active])
    sql = f"{_select(DEPARTMENTS)} WHERE facility_id = $1{where} ORDER BY name, id"
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def list_practitioners(
    conn: asyncpg.Connection,
    *,
    facility_id: uuid.UUID | None,
    department_id: uuid.UUID | None,
    profession: str | None,
    name: str | None,
    active: bool | None,
    limit: int,
    offset: int,
) -> list[Row]:
    """Practitioners by family then given name, filtered (``name``: a prefix of either, any case)."""
    where: list[str] = []
    args: list[Any] = []

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.format(f"${len(args)}"))

    if facility_id is not None:
        add("facility_id = {}", facility_id)
    if department_id is not None:
        add("department_id = {}", department_id)
    if profession:
        add("profession = {}", profession)
    if name:
        pattern = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        add("(family_name ILIKE {0} OR given_name ILIKE {0})", pattern)
    if active is not None:
        add("active = {}", active)
    args += [limit, offset]
    sql = (
        _select(PRACTITIONERS)
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY family_name, given_name, id LIMIT ${len(args) - 1} OFFSET ${len(args)}"
    )
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def facility_by_code(conn: asyncpg.Connection, code: str) -> Row | None:
    """The facility holding ``code`` (any state)."""
    found = await conn.fetchrow(f"{_select(FACILITIES)} WHERE code = $1", code)
    return dict(found) if found is not None else None


async def practitioner_by_identifier(conn: asyncpg.Connection, system: str, value: str) -> Row | None:
    """A practitioner holding the identifier ``system|value`` (the first by id when several do)."""
    found = await conn.fetchrow(
        f"{_select(PRACTITIONERS)} WHERE identifiers @> $1::jsonb ORDER BY id LIMIT 1",
        orjson.dumps([{"system": system, "value": value}]).decode(),
    )
    return dict(found) if found is not None else None
