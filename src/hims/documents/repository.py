"""All SQL of documents, on the driver connection (asyncpg)."""

# SQL is assembled from fixed fragments and our column names; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from hims.core import records
from hims.core.records import Part, Row
from hims.core.security import Actor
from hims.documents.models import Document

TABLE = records.table_of(Document)
COLUMNS = records.writable_columns(TABLE)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM documents"
RETURNING = "t.id, t.patient_id, t.version"


async def get_many(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Documents by id (deleted ones too)."""
    if not ids:
        return {}
    match, value = records.any_of("id", 1, sorted(set(ids)), "uuid")
    sql = f"{_SELECT} WHERE {match} ORDER BY id" + (" FOR UPDATE" if lock else "")
    return {r["id"]: dict(r) for r in await conn.fetch(sql, value)}


async def list_for_patient(
    conn: asyncpg.Connection,
    patient_id: uuid.UUID,
    *,
    consultation_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> list[Row]:
    """A patient's live documents, newest first."""
    where = " AND consultation_id = $4" if consultation_id is not None else ""
    sql = (
        f"{_SELECT} WHERE patient_id = $1 AND deleted_at IS NULL{where} "
        "ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    )
    args = [patient_id, limit, offset] + ([consultation_id] if consultation_id is not None else [])
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def of_patient(conn: asyncpg.Connection, patient_id: uuid.UUID, *, lock: bool) -> list[Row]:
    """Every document of a patient (for a merge)."""
    sql = f"{_SELECT} WHERE patient_id = $1 ORDER BY id" + (" FOR UPDATE" if lock else "")
    return [dict(r) for r in await conn.fetch(sql, patient_id)]


async def insert(conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]) -> None:
    """Insert documents (complete rows)."""
    await records.write(
        conn, actor, "documents", records.insert_part(TABLE, rows, returning=RETURNING), rows, also=also
    )


async def update(
    conn: asyncpg.Connection,
    actor: Actor,
    rows: Sequence[Row],
    also: Sequence[Part],
    *,
    columns: Sequence[str] | None = None,
    deleting: bool = False,
) -> set[uuid.UUID]:
    """New versions of documents (optimistic); returns the ids written."""
    changed = columns or [c for c in COLUMNS if c not in ("id", "created_at")]
    main = records.update_part(TABLE, rows, columns=changed, returning=RETURNING)
    return {
        r["id"]
        for r in await records.write(conn, actor, "documents", main, rows, also=also, deleting=deleting)
    }
