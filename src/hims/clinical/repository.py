"""All SQL of the clinical records domain, on the driver connection (asyncpg).

Each table is a `RecordTable`: reads by id and by patient, and writes through
`hims.core.records.write` (one statement with the PHI log rows and the record's FHIR rendering).
"""

# SQL is assembled from fixed fragments and our own table and column names; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import Table

from hims.clinical.models import Allergy, AllergyOverride, Condition, LabOrder, Observation, Prescription
from hims.core import records
from hims.core.records import Part, Row
from hims.core.security import Actor

#: Problem-list statuses that count as current.
ACTIVE_PROBLEM_STATUSES = ("active", "recurrence", "relapse")


class RecordTable:
    """The SQL of one clinical table whose rows belong to a patient."""

    def __init__(self, model: type[Any]) -> None:
        self.table: Table = records.table_of(model)
        self.name = self.table.name
        self.columns = records.writable_columns(self.table)
        self.select = f"SELECT {', '.join(self.columns)} FROM {self.name}"
        self.returning = (
            "t.id, t.patient_id, t.version" if "version" in self.table.c else "t.id, t.patient_id"
        )

    async def get_many(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool = False
    ) -> dict[uuid.UUID, Row]:
        """Rows by id (locked in id order when ``lock``)."""
        if not ids:
            return {}
        match, value = records.any_of("id", 1, sorted(set(ids)), "uuid")
        sql = f"{self.select} WHERE {match} ORDER BY id" + (" FOR UPDATE" if lock else "")
        return {r["id"]: dict(r) for r in await conn.fetch(sql, value)}

    async def of_patient(
        self,
        conn: asyncpg.Connection,
        patient_id: uuid.UUID,
        *,
        order_by: str = "id",
        where: str = "",
        limit: int | None = None,
        offset: int = 0,
        lock: bool = False,
    ) -> list[Row]:
        """A patient's rows (``where`` is extra SQL of ours, e.g. a status filter)."""
        sql = f"{self.select} WHERE patient_id = $1{where} ORDER BY {order_by}"
        args: list[Any] = [patient_id]
        if limit is not None:
            sql += " LIMIT $2 OFFSET $3"
            args += [limit, offset]
        if lock:
            sql += " FOR UPDATE"
        return [dict(r) for r in await conn.fetch(sql, *args)]

    async def insert(
        self, conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]
    ) -> None:
        """Insert complete rows."""
        main = records.insert_part(self.table, rows, returning=self.returning)
        await records.write(conn, actor, self.name, main, rows, also=also)

    async def update(
        self,
        conn: asyncpg.Connection,
        actor: Actor,
        rows: Sequence[Row],
        also: Sequence[Part],
        *,
        columns: Sequence[str] | None = None,
        deleting: bool = False,
    ) -> set[uuid.UUID]:
        """New versions of rows (optimistic on ``version``); returns the ids written."""
        changed = columns or [c for c in self.columns if c not in ("id", "created_at")]
        main = records.update_part(self.table, rows, columns=changed, returning=self.returning)
        written = await records.write(conn, actor, self.name, main, rows, also=also, deleting=deleting)
        return {r["id"] for r in written}

    async def delete(
        self, conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]
    ) -> set[uuid.UUID]:
        """Remove rows (each at the version of its deletion); returns the ids removed."""
        main = records.delete_part(self.table, rows, returning=self.returning)
        written = await records.write(conn, actor, self.name, main, rows, also=also, deleting=True)
        return {r["id"] for r in written}


OBSERVATIONS = RecordTable(Observation)
CONDITIONS = RecordTable(Condition)
ALLERGIES = RecordTable(Allergy)
PRESCRIPTIONS = RecordTable(Prescription)
LAB_ORDERS = RecordTable(LabOrder)
OVERRIDES = records.table_of(AllergyOverride)


async def active_allergies(conn: asyncpg.Connection, patient_ids: Sequence[uuid.UUID]) -> list[Row]:
    """Active allergies of these patients, oldest first."""
    if not patient_ids:
        return []
    match, value = records.any_of("patient_id", 1, list(set(patient_ids)), "uuid")
    sql = f"{ALLERGIES.select} WHERE {match} AND status = 'active' ORDER BY created_at, id"
    return [dict(r) for r in await conn.fetch(sql, value)]


async def overridden_allergies(conn: asyncpg.Connection, allergy_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these allergies a prescriber overrode."""
    if not allergy_ids:
        return set()
    rows = await conn.fetch(
        "SELECT DISTINCT allergy_id FROM allergy_overrides WHERE allergy_id = ANY($1::uuid[])",
        list(allergy_ids),
    )
    return {r["allergy_id"] for r in rows}


async def overrides_for(
    conn: asyncpg.Connection, prescription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Row]]:
    """Allergy overrides of several prescriptions in one query."""
    grouped: dict[uuid.UUID, list[Row]] = {pid: [] for pid in prescription_ids}
    if not prescription_ids:
        return grouped
    rows = await conn.fetch(
        "SELECT * FROM allergy_overrides WHERE prescription_id = ANY($1::uuid[]) ORDER BY overridden_at, id",
        list(prescription_ids),
    )
    for row in rows:
        grouped[row["prescription_id"]].append(dict(row))
    return grouped


async def add_overrides(
    conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]
) -> None:
    """Record prescribers' allergy overrides (not FHIR resources: no view)."""
    main = records.insert_part(OVERRIDES, rows, returning="t.id, t.patient_id")
    await records.write(conn, actor, "allergy_overrides", main, rows, also=also)


async def move_overrides(
    conn: asyncpg.Connection, actor: Actor, from_id: uuid.UUID, into_id: uuid.UUID, also: Sequence[Part]
) -> int:
    """Re-point a merged patient's allergy overrides at the survivor; returns how many moved."""
    main = Part(
        "w",
        lambda first: (
            f"UPDATE allergy_overrides t SET patient_id = ${first + 1}::uuid "
            f"FROM {records.ACTOR} WHERE patient_id = ${first}::uuid RETURNING t.id, t.patient_id"
        ),
        [from_id, into_id],
        "move_overrides",
    )
    return len(await records.write(conn, actor, "allergy_overrides", main, [], also=also))


async def latest_vitals(conn: asyncpg.Connection, patient_id: uuid.UUID) -> list[Row]:
    """The latest observation of each code (one query, DISTINCT ON)."""
    sql = (
        f"SELECT DISTINCT ON (code) {', '.join(OBSERVATIONS.columns)} FROM observations "
        "WHERE patient_id = $1 ORDER BY code, effective_at DESC"
    )
    return [dict(r) for r in await conn.fetch(sql, patient_id)]


async def observations(
    conn: asyncpg.Connection, patient_id: uuid.UUID, *, code: str | None, limit: int, offset: int
) -> list[Row]:
    """A patient's observations, newest first, optionally of one code."""
    where = " AND code = $4" if code else ""
    sql = f"{OBSERVATIONS.select} WHERE patient_id = $1{where} ORDER BY effective_at DESC, code "
    sql += " LIMIT $2 OFFSET $3"
    args: list[Any] = [patient_id, limit, offset] + ([code] if code else [])
    return [dict(r) for r in await conn.fetch(sql, *args)]
