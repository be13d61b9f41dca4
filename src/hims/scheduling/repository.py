"""All SQL of appointments, on the driver connection (asyncpg).

Writes go through `hims.core.records.write`: one statement with the PHI log rows and the record's
views; reads that disclose appointments take the log part into their own statement, so an access
and its log row commit together without a transaction. The database refuses a double booking
(the exclusion constraint, or the trigger standing in for it without btree_gist); that refusal
becomes 409 ``double_booking`` here.
"""

# SQL is assembled from fixed fragments and our column names; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import Table

from hims.core import records
from hims.core.errors import Conflict
from hims.core.records import Part, Row
from hims.core.security import Actor
from hims.scheduling.models import Appointment

TABLE: Table = Appointment.__table__  # type: ignore[assignment]
COLUMNS = records.writable_columns(TABLE)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM appointments"
#: What `write` returns of each row written (the PHI log reads the patient from it).
RETURNING = "t.id, t.patient_id, t.version"
DOUBLE_BOOKING = "ex_appointments_no_double_booking"


def _refused(exc: asyncpg.IntegrityConstraintViolationError) -> Conflict | None:
    """The domain's error for a write the database refused, when it is one of ours."""
    if getattr(exc, "constraint_name", None) == DOUBLE_BOOKING:
        return Conflict(
            "The practitioner already has an appointment overlapping this time.", code="double_booking"
        )
    return None


async def _write(
    conn: asyncpg.Connection,
    actor: Actor,
    main: Part,
    rows: Sequence[Row],
    also: Sequence[Part],
    *,
    deleting: bool = False,
) -> list[asyncpg.Record]:
    try:
        return await records.write(conn, actor, TABLE.name, main, rows, also=also, deleting=deleting)
    except asyncpg.IntegrityConstraintViolationError as exc:
        conflict = _refused(exc)
        if conflict is None:
            raise
        raise conflict from None


async def get(conn: asyncpg.Connection, appointment_id: uuid.UUID, *, lock: bool = False) -> Row | None:
    """One appointment (any state)."""
    found = await conn.fetchrow(_SELECT + " WHERE id = $1" + (" FOR UPDATE" if lock else ""), appointment_id)
    return dict(found) if found is not None else None


async def get_many(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Appointments by id (any state), locked in id order when ``lock``."""
    if not ids:
        return {}
    match, value = records.any_of("id", 1, sorted(set(ids)), "uuid")
    sql = f"{_SELECT} WHERE {match} ORDER BY id" + (" FOR UPDATE" if lock else "")
    return {r["id"]: dict(r) for r in await conn.fetch(sql, value)}


async def get_logged(conn: asyncpg.Connection, appointment_id: uuid.UUID, log: Part) -> Row | None:
    """One appointment, with ``log`` (reading CTE ``found``) in the same statement."""
    found = Part("found", lambda first: f"{_SELECT} WHERE id = ${first}", [appointment_id], "appointment")
    sql, args = records.compose([found, log], "SELECT * FROM found")
    row = await conn.fetchrow(sql, *args)
    return dict(row) if row is not None else None


async def of_patient(conn: asyncpg.Connection, patient_id: uuid.UUID, *, lock: bool = False) -> list[Row]:
    """Every appointment of a patient, in id order (locked when ``lock``)."""
    sql = f"{_SELECT} WHERE patient_id = $1 ORDER BY id" + (" FOR UPDATE" if lock else "")
    return [dict(r) for r in await conn.fetch(sql, patient_id)]


async def count_of_practitioners(conn: asyncpg.Connection, practitioner_ids: Sequence[uuid.UUID]) -> int:
    """How many appointments these practitioners have (any state)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM appointments WHERE practitioner_id = ANY($1::uuid[])",
            list(practitioner_ids),
        )
    )


async def insert(conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]) -> None:
    """Insert complete rows (409 ``double_booking`` when one overlaps a live appointment)."""
    await _write(conn, actor, records.insert_part(TABLE, rows, returning=RETURNING), rows, also)


async def update(
    conn: asyncpg.Connection,
    actor: Actor,
    rows: Sequence[Row],
    also: Sequence[Part],
    *,
    columns: Sequence[str] | None = None,
    deleting: bool = False,
) -> set[uuid.UUID]:
    """Write new versions (each row's ``version`` is the new one; a row whose stored version is not
    the one before is not written); returns the ids written."""
    changed = columns or [c for c in COLUMNS if c not in ("id", "created_at")]
    main = records.update_part(TABLE, rows, columns=changed, returning=RETURNING)
    return {r["id"] for r in await _write(conn, actor, main, rows, also, deleting=deleting)}


def list_sql(
    *,
    starts_from: datetime | None,
    starts_before: datetime | None,
    practitioner_id: uuid.UUID | None,
    patient_id: uuid.UUID | None,
    statuses: Sequence[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    first: int,
) -> tuple[str, list[Any]]:
    """Appointments in start order, filtered, with their position ``n``; keyset paging on
    (starts_at, id). Parameters are numbered from ``$first``."""
    where: list[str] = []
    args: list[Any] = []

    def add(condition: str, *values: Any) -> None:
        numbers = [f"${first + len(args) + i}" for i in range(len(values))]
        args.extend(values)
        where.append(condition.format(*numbers))

    if starts_from is not None:
        add("starts_at >= {}::timestamptz", starts_from)
    if starts_before is not None:
        add("starts_at < {}::timestamptz", starts_before)
    if practitioner_id is not None:
        add("practitioner_id = {}::uuid", practitioner_id)
    if patient_id is not None:
        add("patient_id = {}::uuid", patient_id)
    if statuses:
        add("status = ANY({}::varchar[])", list(statuses))
    if after is not None:
        add("(starts_at, id) > ({}::timestamptz, {}::uuid)", *after)
    sql = (
        f"SELECT a.*, row_number() OVER (ORDER BY a.starts_at, a.id) AS n FROM ({_SELECT}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY starts_at, id LIMIT {int(limit)}) a"
    )
    return sql, args


async def list_appointments(
    conn: asyncpg.Connection,
    *,
    starts_from: datetime | None,
    starts_before: datetime | None,
    practitioner_id: uuid.UUID | None,
    patient_id: uuid.UUID | None,
    statuses: Sequence[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    log: Part | None = None,
) -> list[Row]:
    """Up to ``limit`` appointments in start order; ``log`` (reading CTE ``found``) runs in the
    same statement."""
    filters: dict[str, Any] = {
        "starts_from": starts_from,
        "starts_before": starts_before,
        "practitioner_id": practitioner_id,
        "patient_id": patient_id,
        "statuses": statuses,
        "after": after,
        "limit": limit,
    }
    if log is None:
        sql, args = list_sql(**filters, first=1)
        return [dict(r) for r in await conn.fetch(sql, *args)]
    _, values = list_sql(**filters, first=1)
    found = Part("found", lambda first: list_sql(**filters, first=first)[0], values, None)
    text, params = records.compose([found, log], "SELECT * FROM found ORDER BY n")
    return [dict(r) for r in await conn.fetch(text, *params)]
