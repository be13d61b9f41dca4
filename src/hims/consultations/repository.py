"""All SQL of the consultations domain, on the driver connection (asyncpg).

``consultations`` is partitioned by year of ``started_at``; a lookup by id narrows to its
partition through ``consultation_keys`` (`consultation_partition_filter`), a write names the
whole key ``(id, started_at)``.
"""

# SQL is assembled from fixed fragments and our column names; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

import asyncpg

from hims.consultations.models import Consultation, ConsultationAmendment, consultation_partition_filter
from hims.core import records
from hims.core.records import Part, Row
from hims.core.security import Actor

TABLE = records.table_of(Consultation)
AMENDMENTS = records.table_of(ConsultationAmendment)
COLUMNS = records.writable_columns(TABLE)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM consultations"
#: What `write` returns of each row written.
RETURNING = "t.id, t.patient_id, t.version"
KEY = ("id", "started_at")


class MissingPartition(Exception):
    """The row's year has no partition (an operator must run `hims db partitions ensure`)."""


def _by_ids(ids: Sequence[uuid.UUID], number: int = 1) -> tuple[str, object]:
    match, value = records.any_of("id", number, list(ids), "uuid")
    return match + consultation_partition_filter(match, len(ids)), value


def select_by_id_sql(number: int = 1) -> str:
    """SELECT of one consultation by the id in ``$number``, narrowed to its partition."""
    return f"{_SELECT} WHERE {_by_ids([uuid.UUID(int=0)], number)[0]}"


async def get_many(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Consultations by id (locked in id order when ``lock``)."""
    if not ids:
        return {}
    where, value = _by_ids(sorted(set(ids)))
    sql = f"{_SELECT} WHERE {where} ORDER BY id" + (" FOR UPDATE" if lock else "")
    return {r["id"]: dict(r) for r in await conn.fetch(sql, value)}


def row_subquery(number: int) -> str:
    """A scalar subquery: the composite consultation row whose id is ``$number`` (one partition)."""
    where, _ = _by_ids([uuid.UUID(int=0)], number)
    return f"(SELECT t FROM consultations t WHERE {where})"


async def get_logged(conn: asyncpg.Connection, consultation_id: uuid.UUID, log: Part) -> Row | None:
    """One consultation, with ``log`` (reading CTE ``found``) in the same statement."""
    found = Part(
        "found",
        lambda first: f"{_SELECT} WHERE {_by_ids([consultation_id], first)[0]}",
        [consultation_id],
        "consultation",
    )
    sql, args = records.compose([found, log], "SELECT * FROM found")
    row = await conn.fetchrow(sql, *args)
    return dict(row) if row is not None else None


async def owners(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Consultation id → its patient, for the ids that exist."""
    if not ids:
        return {}
    match, value = records.any_of("id", 1, list(set(ids)), "uuid")
    sql = (
        "SELECT c.id, c.patient_id FROM consultation_keys k JOIN consultations c "
        f"ON c.id = k.id AND c.started_at = k.started_at WHERE k.{match}"
    )
    return {r["id"]: r["patient_id"] for r in await conn.fetch(sql, value)}


async def list_for_patient(
    conn: asyncpg.Connection, patient_id: uuid.UUID, *, limit: int, offset: int = 0
) -> list[Row]:
    """A patient's consultations, newest first."""
    sql = f"{_SELECT} WHERE patient_id = $1 ORDER BY started_at DESC LIMIT $2 OFFSET $3"
    return [dict(r) for r in await conn.fetch(sql, patient_id, limit, offset)]


async def of_patient(conn: asyncpg.Connection, patient_id: uuid.UUID, *, lock: bool) -> list[Row]:
    """Every consultation of a patient (for a merge)."""
    sql = f"{_SELECT} WHERE patient_id = $1 ORDER BY id" + (" FOR UPDATE" if lock else "")
    return [dict(r) for r in await conn.fetch(sql, patient_id)]


async def started_for_appointments(
    conn: asyncpg.Connection, appointment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Appointment → the consultation already started from it, for those that have one."""
    if not appointment_ids:
        return {}
    match, value = records.any_of("appointment_id", 1, list(set(appointment_ids)), "uuid")
    rows = await conn.fetch(f"SELECT appointment_id, id FROM consultations WHERE {match}", value)
    return {r["appointment_id"]: r["id"] for r in rows}


async def _write(
    conn: asyncpg.Connection, actor: Actor, main: Part, rows: Sequence[Row], also: Sequence[Part], **kw: bool
) -> set[uuid.UUID]:
    try:
        written = await records.write(conn, actor, "consultations", main, rows, also=also, **kw)
    except asyncpg.CheckViolationError as exc:
        if "no partition" in str(exc):
            # PostgreSQL names the failing row's key: "... contains (started_at) = (2019-05-01 ...)".
            year = re.search(r"= \((\d{4})-", getattr(exc, "detail", None) or "")
            raise MissingPartition(year.group(1) if year else str(rows[0]["started_at"].year)) from None
        raise
    return {r["id"] for r in written}


async def insert(
    conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]
) -> set[uuid.UUID]:
    """Insert new consultations (complete rows)."""
    return await _write(conn, actor, records.insert_part(TABLE, rows, returning=RETURNING), rows, also)


async def update(
    conn: asyncpg.Connection,
    actor: Actor,
    rows: Sequence[Row],
    also: Sequence[Part],
    *,
    columns: Sequence[str] | None = None,
) -> set[uuid.UUID]:
    """New versions of consultations (optimistic); returns the ids written."""
    changed = columns or [c for c in COLUMNS if c not in ("id", "started_at", "created_at")]
    main = records.update_part(TABLE, rows, columns=changed, returning=RETURNING, key=KEY)
    return await _write(conn, actor, main, rows, also)


async def delete(
    conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]
) -> set[uuid.UUID]:
    """Remove consultations (each row at the version of its deletion); returns the ids removed."""
    main = records.delete_part(TABLE, rows, returning=RETURNING, key=KEY)
    return await _write(conn, actor, main, rows, also, deleting=True)


# ------------------------------------------------------------------------------ amendments


async def amendments(conn: asyncpg.Connection, consultation: Row) -> list[Row]:
    """Amendments of a consultation, oldest first."""
    sql = (
        "SELECT * FROM consultation_amendments WHERE consultation_id = $1 AND consultation_started_at = $2 "
        "ORDER BY created_at"
    )
    return [dict(r) for r in await conn.fetch(sql, consultation["id"], consultation["started_at"])]


async def add_amendment(conn: asyncpg.Connection, actor: Actor, row: Row, also: Sequence[Part]) -> None:
    """Insert an amendment (not a FHIR resource: no view)."""
    main = records.insert_part(AMENDMENTS, [row], returning="t.id, t.patient_id")
    await records.write(conn, actor, "consultation_amendments", main, [row], also=also)


async def move_amendments(
    conn: asyncpg.Connection, actor: Actor, from_id: uuid.UUID, into_id: uuid.UUID, also: Sequence[Part]
) -> int:
    """Re-point a merged patient's amendments at the survivor; returns how many moved."""
    main = Part(
        "w",
        lambda first: (
            f"UPDATE consultation_amendments t SET patient_id = ${first + 1}::uuid "
            f"FROM {records.ACTOR} WHERE patient_id = ${first}::uuid RETURNING t.id, t.patient_id"
        ),
        [from_id, into_id],
        "move_amendments",
    )
    return len(await records.write(conn, actor, "consultation_amendments", main, [], also=also))


async def patients_without_consultations(
    conn: asyncpg.Connection, patient_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Those of ``patient_ids`` that have no consultation yet (in the given order)."""
    if not patient_ids:
        return []
    have = {
        r["patient_id"]
        for r in await conn.fetch(
            "SELECT DISTINCT patient_id FROM consultations WHERE patient_id = ANY($1::uuid[])",
            list(patient_ids),
        )
    }
    return [p for p in patient_ids if p not in have]
