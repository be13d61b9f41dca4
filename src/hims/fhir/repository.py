"""All SQL of the FHIR store. Runs on the session's own connection (same transaction) through
asyncpg directly: writes are one statement per batch (resource, history and index rows together)."""

# SQL is assembled from fixed fragments; every value is a bound parameter ($n), never spliced.
# ruff: noqa: S608

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit.service import actor_params, insert_per_row
from hims.core import records
from hims.core.db import driver_connection
from hims.core.records import Part
from hims.core.security import Actor
from hims.fhir.extract import IndexRows


async def connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under ``session``, inside the session's transaction."""
    return await driver_connection(session)


_ROW_COLUMNS = (
    "SELECT r.rid, r.resource_type, r.id, r.patient_ref, r.last_updated, r.resource::text AS resource "
)


@dataclass
class Current:
    """The current row of a resource."""

    rid: int
    version_id: int
    deleted: bool
    last_updated: datetime
    resource: str | None  # JSON text
    patient_ref: str | None
    #: The resource's domain row, when the storage read it along (``row_read``; None: it has none).
    row: Mapping[str, Any] | None = field(default=None, repr=False)
    row_read: bool = False


@dataclass
class Write:
    """One version to write: ``resource`` JSON text is None for a delete."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    method: str
    resource: str | None
    patient_ref: str | None
    index: IndexRows | None
    #: The dict ``resource`` was serialised from, when at hand: the domain projection reads it
    #: instead of parsing the text again. Not written; never compared.
    document: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    #: The version this one follows, as the writer read it (with its domain row, when the storage
    #: read that along): a domain write need not look the row up again. Not written.
    prior: Current | None = field(default=None, repr=False, compare=False)
    #: What the PHI access log calls this write (create, update, delete); derived when empty.
    action: str = ""
    #: Request options a domain honours (e.g. ``allow_duplicate``). Not written.
    options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Drafted, not yet indexed and serialised (`hims.fhir.versions.draft`): ``resource`` is a
    #: placeholder until a storage that keeps the version as it is completes it.
    pending: bool = field(default=False, repr=False, compare=False)

    def log_action(self) -> str:
        """The PHI log action of this version."""
        if self.action:
            return self.action
        if self.method == "DELETE":
            return "delete"
        fresh = self.prior.deleted if self.prior is not None else self.version_id == 1
        return "create" if fresh else "update"


_READ = (
    "SELECT rid, version_id, deleted, last_updated, resource::text AS resource, patient_ref "
    "FROM fhir_resources WHERE resource_type = $1 AND id = $2"
)


async def read(
    conn: asyncpg.Connection,
    resource_type: str,
    id_: str,
    *,
    lock: bool = False,
    row: tuple[str, Any] | None = None,
) -> Current | None:
    """The current version (or tombstone), optionally locked for update (the version only).

    ``row``: (a scalar subquery selecting one composite domain row, its parameter as ``$3``), read
    in the same statement into `Current.row`.
    """
    if row is None:
        found = await conn.fetchrow(_READ + (" FOR UPDATE" if lock else ""), resource_type, id_)
        return Current(**dict(found)) if found else None
    sql = _read_with_row(row[0], lock)
    found = await conn.fetchrow(sql, resource_type, id_, row[1])
    return Current(**dict(found), row_read=True) if found else None


@functools.lru_cache(maxsize=64)
def _read_with_row(subquery: str, lock: bool) -> str:
    head, _, tail = _READ.partition(" FROM ")
    return f"{head}, {subquery} AS row FROM {tail}" + (" FOR UPDATE" if lock else "")


def _patient_uuid(ref: str) -> str:
    """SQL for the PHI log's patient_id of the compartment reference ``ref``, as
    `hims.fhir.service.audit_patient` reads it: the id of a "Patient/<id>" reference when it is a
    UUID (ids are [A-Za-z0-9.-]: Python's UUID() drops the hyphens and wants 32 hex digits, as
    this does), else NULL."""
    return (
        f"CASE WHEN {ref} LIKE 'Patient/%' AND replace(substr({ref}, 9), '-', '') ~ '^[0-9A-Fa-f]{{32}}$' "
        f"THEN replace(substr({ref}, 9), '-', '')::uuid END"
    )


_READ_LOGGED = (
    f"WITH r AS ({_READ}), logged AS ("
    + insert_per_row(
        "r WHERE NOT r.deleted",
        3,
        patient_id=_patient_uuid("r.patient_ref"),
        resource_id="$2::varchar",
    )
    + ") SELECT * FROM r"
)


async def read_logged(conn: asyncpg.Connection, resource_type: str, id_: str, actor: Actor) -> Current | None:
    """`read`, writing ``actor``'s PHI access log row in the same statement when there is a
    current version: atomic on its own, so it needs no transaction (one round trip)."""
    row = await conn.fetchrow(_READ_LOGGED, resource_type, id_, *actor_params(actor, "read", resource_type))
    return Current(**dict(row)) if row else None


async def read_many(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
) -> dict[tuple[str, str], Current]:
    """Current rows for many (type, id) keys in one round trip."""
    if not keys:
        return {}
    sql = (
        "SELECT r.resource_type, r.id, rid, version_id, deleted, last_updated, resource::text AS resource, "
        "patient_ref FROM fhir_resources r JOIN unnest($1::text[], $2::text[]) k(t, i) "
        "ON r.resource_type = k.t AND r.id = k.i"
    )
    rows = await conn.fetch(
        sql + (" FOR UPDATE OF r" if lock else ""), [k[0] for k in keys], [k[1] for k in keys]
    )
    out: dict[tuple[str, str], Current] = {}
    for row in rows:
        data = dict(row)
        key = (data.pop("resource_type"), data.pop("id"))
        out[key] = Current(**data)
    return out


async def vread(
    conn: asyncpg.Connection, resource_type: str, id_: str, version_id: int
) -> tuple[bool, str | None] | None:
    """(found, resource JSON text or None when that version is a delete)."""
    row = await conn.fetchrow(
        "SELECT resource::text AS resource FROM fhir_resource_history "
        "WHERE resource_type = $1 AND id = $2 AND version_id = $3",
        resource_type,
        id_,
        version_id,
    )
    return (True, row["resource"]) if row else None


async def history(
    conn: asyncpg.Connection,
    resource_type: str | None,
    id_: str | None,
    *,
    since: datetime | None,
    limit: int,
    before: tuple[datetime, str, int] | None,
) -> list[asyncpg.Record]:
    """Versions newest first (instance, type or system level), keyset-paged on (time, id, version)."""
    clauses: list[str] = []
    args: list[Any] = []
    if resource_type:
        args.append(resource_type)
        clauses.append(f"resource_type = ${len(args)}")
    if id_:
        args.append(id_)
        clauses.append(f"id = ${len(args)}")
    if since:
        args.append(since)
        clauses.append(f"last_updated >= ${len(args)}")
    if before:
        args.extend(before)
        n = len(args)
        clauses.append(f"(last_updated, id, version_id) < (${n - 2}, ${n - 1}, ${n})")
    where = " AND ".join(clauses) or "TRUE"
    args.append(limit)
    return list(
        await conn.fetch(
            "SELECT resource_type, id, version_id, last_updated, method, resource::text AS resource "
            f"FROM fhir_resource_history WHERE {where} "
            f"ORDER BY last_updated DESC, id DESC, version_id DESC LIMIT ${len(args)}",
            *args,
        )
    )


#: Per index table: (name, columns after rid and rtype, array types of the unnested columns).
_INDEX_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("fhir_idx_token", ("param", "system", "code"), ("text", "text", "text")),
    ("fhir_idx_string", ("param", "value", "raw"), ("text", "text", "text")),
    ("fhir_idx_date", ("param", "low", "high"), ("text", "timestamptz", "timestamptz")),
    ("fhir_idx_reference", ("param", "target_type", "target_id"), ("text", "text", "text")),
    ("fhir_idx_quantity", ("param", "value", "system", "code"), ("text", "numeric", "text", "text")),
)


def _data_sql(first: int, gate: str | None) -> str:
    """The versions of a batch, parsed once (materialised: each document's JSON text becomes jsonb
    once, not once per table); with ``gate``, only those whose id the gate selects."""
    where = f" WHERE d.id IN ({gate})" if gate else ""
    return (
        "SELECT rtype, id, version_id, last_updated, patient_ref, resource::jsonb AS resource, method, "
        f"action, n FROM unnest(${first}::text[], ${first + 1}::text[], ${first + 2}::int[], "
        f"${first + 3}::timestamptz[], ${first + 4}::text[], ${first + 5}::text[], ${first + 6}::text[], "
        f"${first + 7}::text[]) "
        "WITH ORDINALITY AS d(rtype, id, version_id, last_updated, patient_ref, resource, method, action, n)"
        f"{where}"
    )


def _upsert_sql(data: str, guard: str) -> str:
    return (
        "INSERT INTO fhir_resources AS r "
        "(resource_type, id, version_id, last_updated, deleted, patient_ref, resource) "
        f"SELECT rtype, id, version_id, last_updated, method = 'DELETE', patient_ref, resource FROM {data} "
        "ON CONFLICT (resource_type, id) DO UPDATE SET version_id = EXCLUDED.version_id, "
        "last_updated = EXCLUDED.last_updated, deleted = EXCLUDED.deleted, "
        "patient_ref = EXCLUDED.patient_ref, resource = EXCLUDED.resource "
        f"WHERE {guard} RETURNING r.rid, r.resource_type, r.id"
    )


def _fixed(sql: str) -> Callable[[int], str]:
    """A part's text that takes no parameters."""
    return lambda _first: sql


def write_parts(
    writes: Sequence[Write],
    *,
    prefix: str = "f_",
    replace_index: bool = True,
    gate: str | None = None,
    log: Actor | None = None,
) -> list[Part]:
    """The CTEs writing ``writes`` (resource, history and index rows; with ``log``, a PHI access
    log row per version written), named ``<prefix>data``, ``<prefix>up``... ``<prefix>up`` returns
    (rid, resource_type, id) of every version written.

    Without ``gate`` a version is written only over the one before it (optimistic concurrency: a
    version that lost its race is not written). With ``gate`` (SQL selecting ids, e.g. those a
    domain write wrote), only the gated versions are written, over any older version: the domain
    row's own version check decided already.

    The statement is composed per batch shape (index deletes only when a version is not the first,
    index inserts only for tables that get rows), so PostgreSQL keeps a generic plan for each; one
    fixed statement with every part cost about a millisecond of planning per write.
    """
    data, up = f"{prefix}data", f"{prefix}up"
    # Per index table (in _INDEX_TABLES order): (n, *row) for every row.
    tables: tuple[list[tuple[Any, ...]], ...] = ([], [], [], [], [])
    for n, item in enumerate(writes, start=1):
        rows = item.index
        if rows is None:
            continue
        found: tuple[Sequence[tuple[Any, ...]], ...] = (
            rows.tokens,
            rows.strings,
            rows.dates,
            rows.refs,
            rows.quantities,
        )
        for out, rows_of_table in zip(tables, found, strict=True):
            if rows_of_table:
                out.extend([(n, *row) for row in rows_of_table])
    columns = [
        [w.resource_type for w in writes],
        [w.id for w in writes],
        [w.version_id for w in writes],
        [w.last_updated for w in writes],
        [w.patient_ref for w in writes],
        [w.resource for w in writes],
        [w.method for w in writes],
        [w.log_action() for w in writes],
    ]
    parts = [
        Part(data, lambda first: _data_sql(first, gate), columns, ("data", gate), materialized=True),
    ]
    guard = "r.version_id < EXCLUDED.version_id" if gate else "r.version_id = EXCLUDED.version_id - 1"
    parts.append(Part(up, lambda _first: _upsert_sql(data, guard), [], ("up", data, guard)))
    parts.append(
        Part(
            f"{prefix}hist",
            lambda _first: (
                "INSERT INTO fhir_resource_history "
                "(resource_type, id, version_id, last_updated, method, resource) "
                f"SELECT d.rtype, d.id, d.version_id, d.last_updated, d.method, d.resource FROM {data} d "
                f"JOIN {up} ON {up}.resource_type = d.rtype AND {up}.id = d.id"
            ),
            [],
            ("hist", prefix),
        )
    )
    if (replace_index and any(w.version_id != 1 for w in writes)) or gate:
        for n, (table, _, _) in enumerate(_INDEX_TABLES):
            delete = f"DELETE FROM {table} WHERE rid = ANY(ARRAY(SELECT rid FROM {up}))"
            parts.append(Part(f"{prefix}d{n}", _fixed(delete), [], ("del", table, up)))
    if any(tables):
        keyed = f"{prefix}keyed"
        parts.append(
            Part(
                keyed,
                lambda _first: (
                    f"SELECT d.n, {up}.rid, {up}.resource_type FROM {data} d "
                    f"JOIN {up} ON {up}.resource_type = d.rtype AND {up}.id = d.id"
                ),
                [],
                ("keyed", prefix),
            )
        )
        for n, ((table, names, types), table_rows) in enumerate(zip(_INDEX_TABLES, tables, strict=True)):
            if not table_rows:
                continue
            aliases = [f"c{i}" for i in range(len(names))]
            arrays = [list(col) for col in zip(*table_rows, strict=True)]

            def index_sql(
                first: int,
                table: str = table,
                names: tuple[str, ...] = names,
                types: tuple[str, ...] = types,
                aliases: list[str] = aliases,
            ) -> str:
                params = ", ".join(
                    [f"${first}::bigint[]"] + [f"${first + 1 + i}::{t}[]" for i, t in enumerate(types)]
                )
                return (
                    f"INSERT INTO {table} (rid, rtype, {', '.join(names)}) "
                    f"SELECT k.rid, k.resource_type, {', '.join('u.' + c for c in aliases)} "
                    f"FROM unnest({params}) u(n, {', '.join(aliases)}) JOIN {keyed} k ON k.n = u.n"
                )

            parts.append(Part(f"{prefix}i{n}", index_sql, arrays, ("index", table, prefix)))
    if log is not None:
        written = f"{data} d JOIN {up} ON {up}.resource_type = d.rtype AND {up}.id = d.id"
        parts.append(
            Part(
                f"{prefix}logged",
                lambda first: insert_per_row(
                    written,
                    first,
                    patient_id=_patient_uuid("d.patient_ref"),
                    resource_id="d.id",
                    action="d.action",
                    resource_type="d.rtype",
                ),
                actor_params(log, None, None),
                ("log", prefix),
            )
        )
    return parts


async def write(
    conn: asyncpg.Connection,
    writes: Sequence[Write],
    *,
    replace_index: bool = True,
    log: Actor | None = None,
) -> set[tuple[str, str]]:
    """Write versions, history and index rows in one statement; returns the keys actually written.

    A key missing from the result lost an optimistic-concurrency race (version moved on).
    ``replace_index`` deletes the index rows of earlier versions (a first version has none).
    ``log`` (the actor) writes the PHI access log row of each version written, in the same statement.
    """
    if not writes:
        return set()
    parts = write_parts(writes, replace_index=replace_index, log=log)
    sql, args = records.compose(parts, "SELECT resource_type, id FROM f_up")
    return {(r["resource_type"], r["id"]) for r in await conn.fetch(sql, *args)}


any_of = records.any_of


#: Up to this many keys, `existing_keys` spells each out (a statement per count, planned once).
_SPELLED_KEYS = 8


async def existing_keys(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of ``keys`` exist and are not deleted."""
    if not keys:
        return set()
    if len(keys) <= _SPELLED_KEYS:  # see `any_of`: a generic plan, no planning per execution
        pairs = ", ".join(f"(${2 * n + 1}::text, ${2 * n + 2}::text)" for n in range(len(keys)))
        rows = await conn.fetch(
            f"SELECT resource_type, id FROM fhir_resources WHERE (resource_type, id) IN ({pairs}) "
            "AND NOT deleted",
            *(part for key in keys for part in key),
        )
    else:
        rows = await conn.fetch(
            "SELECT r.resource_type, r.id FROM fhir_resources r JOIN unnest($1::text[], $2::text[]) k(t, i) "
            "ON r.resource_type = k.t AND r.id = k.i WHERE NOT r.deleted",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
    return {(r["resource_type"], r["id"]) for r in rows}


async def fetch_by_rids(conn: asyncpg.Connection, rids: Sequence[int]) -> list[asyncpg.Record]:
    """Resources by rid, in the given order."""
    rows = await conn.fetch(
        _ROW_COLUMNS
        + "FROM fhir_resources r JOIN unnest($1::bigint[]) WITH ORDINALITY k(rid, n) ON r.rid = k.rid "
        "ORDER BY k.n",
        list(rids),
    )
    return list(rows)


async def fetch_by_keys(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> list[asyncpg.Record]:
    """Live resources by (type, id)."""
    if not keys:
        return []
    return list(
        await conn.fetch(
            _ROW_COLUMNS + "FROM fhir_resources r JOIN unnest($1::text[], $2::text[]) k(t, i) "
            "ON r.resource_type = k.t AND r.id = k.i WHERE NOT r.deleted",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
    )


async def references_from(
    conn: asyncpg.Connection, rids: Sequence[int], param: str, target_type: str | None
) -> list[tuple[str, str]]:
    """Targets of ``param`` references held by the resources ``rids`` (for _include)."""
    rows = await conn.fetch(
        "SELECT DISTINCT target_type, target_id FROM fhir_idx_reference "
        "WHERE rid = ANY($1::bigint[]) AND param = $2 AND ($3::text IS NULL OR target_type = $3)",
        list(rids),
        param,
        target_type,
    )
    return [(r["target_type"], r["target_id"]) for r in rows]


async def referencing(
    conn: asyncpg.Connection, source_type: str, param: str, targets: Sequence[tuple[str, str]], limit: int
) -> list[int]:
    """rids of live ``source_type`` resources whose ``param`` points at any of ``targets`` (_revinclude)."""
    if not targets:
        return []
    rows = await conn.fetch(
        "SELECT DISTINCT x.rid FROM fhir_idx_reference x "
        "JOIN unnest($3::text[], $4::text[]) k(t, i) ON x.target_type = k.t AND x.target_id = k.i "
        "WHERE x.rtype = $1 AND x.param = $2 LIMIT $5",
        source_type,
        param,
        [t[0] for t in targets],
        [t[1] for t in targets],
        limit,
    )
    return [r["rid"] for r in rows]


async def compartment_page(
    conn: asyncpg.Connection,
    patient_id: str,
    *,
    after_rid: int,
    limit: int,
    types: Sequence[str] | None,
    since: datetime | None,
) -> list[asyncpg.Record]:
    """The Patient and every live resource in its compartment, in rid order (keyset after ``after_rid``)."""
    return list(
        await conn.fetch(
            _ROW_COLUMNS + "FROM fhir_resources r WHERE patient_ref = $1 AND NOT deleted AND rid > $2 "
            "AND ($4::text[] IS NULL OR resource_type = ANY($4)) "
            "AND ($5::timestamptz IS NULL OR last_updated >= $5) ORDER BY rid LIMIT $3",
            patient_id,
            after_rid,
            limit,
            list(types) if types else None,
            since,
        )
    )
