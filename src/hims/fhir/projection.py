"""FHIR ↔ domain tables: a mapped resource type lives in both, kept equal in one transaction.

The FHIR store (``fhir_resources`` and its history and search index) keeps every version of the
resource whole, so nothing a client sends is lost. The domain table (``patients``, …) holds the
fields we model, which is what the REST API, the UI and the clinical rules read. Both sides are
written in the same database transaction, in both directions:

* **FHIR → domain.** `hims.fhir.storage.ProjectedStorage.write` (the storage of every projected
  type) turns each version into a row with the mapping's ``to_row`` (`project_writes`) and upserts
  it (one statement per type; the last type's as CTEs of the statement writing the FHIR versions).
  A delete soft-deletes the row (or whatever the type's projector says).
  Only resources with a UUID id (every server-assigned id is one) can have a row. A new resource
  that lacks what the domain requires (a Patient with no birth date, a reference to something that
  has no row) is kept in the FHIR store only; a version that would break a row that exists is
  refused with 422 ``domain_constraint``, since the REST API and the clinical rules rely on it.
* **domain → FHIR.** An ``after_flush`` listener notes every ORM row of a projected class that a
  flush inserted, changed or deleted; just before the transaction commits (`hims.core.db`'s
  ``BEFORE_COMMIT``), each noted row is read back and written as a new FHIR version built by the
  mapping's ``to_resource`` over the stored version, so elements we do not model are kept.

Writes made here never go through the ORM, so the two directions cannot feed each other.
"""

# SQL is assembled from table and column names of our own models; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import asyncpg
import orjson
from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.sqltypes import JSON, String

from hims.core import db
from hims.core.errors import Conflict, ValidationFailed, field_error
from hims.fhir import repository as repo
from hims.fhir.versions import dumps, prepare

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
#: Columns the database or this module maintains; never taken from a mapping.
_MANAGED = frozenset({"id", "created_at", "updated_at", "version"})


@dataclass
class Candidate:
    """One FHIR version on its way to a domain row."""

    id: uuid.UUID
    resource: dict[str, Any]
    row: dict[str, Any]
    existing: asyncpg.Record | None
    #: Why it cannot have a row (None: it can).
    problem: str | None = None
    #: The resource was amended by the domain (e.g. an MRN was assigned): write it back.
    amended: bool = False


#: (domain row, stored resource or None) → the row's FHIR resource.
ResourceOf = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]
Completer = Callable[[asyncpg.Connection, list[Candidate]], Awaitable[None]]
#: Checks the rows a FHIR delete is about to remove; raises a HimsError to refuse (409, …).
DeleteCheck = Callable[[asyncpg.Connection, list[asyncpg.Record]], Awaitable[None]]


@dataclass(frozen=True)
class Projector:
    """How one FHIR type maps onto one domain table."""

    resource_type: str
    model: Any
    #: FHIR resource → column values (the mapping's ``to_row``).
    to_row: Callable[[dict[str, Any]], dict[str, Any]]
    #: (domain row, stored resource or None) → the FHIR resource of that row (see `keeping_extra`).
    to_resource: ResourceOf
    #: Write order within one batch: targets of references first.
    rank: int
    #: Columns that must have a value (not None, not "") for a row to exist.
    required: tuple[str, ...] = ()
    #: Reference columns → table they point at. A required one whose target has no row makes the
    #: resource FHIR-only; an optional one is left empty (the FHIR reference itself is kept).
    references: dict[str, str] = field(default_factory=dict)
    #: Why a resource cannot be a row, judged from the resource alone (None: it may be one). Runs
    #: before ``to_row``, so the shapes a type mostly keeps FHIR-only cost no mapping or lookups.
    screen: Callable[[dict[str, Any]], str | None] | None = None
    #: Fills the columns the domain assigns itself (e.g. an MRN); may set ``problem``/``amended``.
    #: It may read but not write: a FHIR create runs outside a transaction (`hims.fhir.service.create`).
    complete: Completer | None = None
    #: Column → SQL expression set when the FHIR resource is deleted; also reset to NULL/default
    #: by an upsert (an update after a delete brings the row back). Empty: the row is deleted.
    delete_sets: dict[str, str] = field(default_factory=dict)
    #: Whether a domain row reads as deleted in FHIR.
    is_deleted: Callable[[dict[str, Any]], bool] = lambda _row: False
    #: Column holding the patient a row belongs to (re-projected after a patient merge).
    patient_column: str | None = "patient_id"
    #: The upsert's ON CONFLICT target (a partitioned table's key includes the partition column).
    upsert_key: tuple[str, ...] = ("id",)
    #: Refuses a FHIR delete the domain does not allow (e.g. of a signed record), before any write.
    check_delete: DeleteCheck | None = None
    #: Resources of other types built from a row (e.g. a lab result's Observation), with ids of
    #: their own; the domain → FHIR side writes them whole next to the row's resource.
    derived: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda _row: []
    #: Constraint name → error code, for a write the database refuses (409; others ``domain_conflict``).
    constraint_codes: dict[str, str] = field(default_factory=dict)
    #: For a partitioned table: (condition on ``id``, number of ids) → `` AND …`` narrowing a
    #: lookup to the rows' partitions (else PostgreSQL probes every partition).
    partition_filter: Callable[[str, int], str] | None = None

    def rows_by_id_sql(self, match: str, count: int) -> str:
        """``SELECT *`` of the ``count`` rows whose id satisfies ``match`` (`repo.any_of`)."""
        narrow = self.partition_filter(match, count) if self.partition_filter else ""
        return f"SELECT * FROM {self.table.name} WHERE {match}{narrow}"

    def row_sql(self, number: int) -> str:
        """A scalar subquery: the composite row whose id is parameter ``$number`` (or NULL)."""
        match = f"id = ${number}::uuid"
        narrow = self.partition_filter(match, 1) if self.partition_filter else ""
        return f"(SELECT t FROM {self.table.name} t WHERE {match}{narrow})"

    @property
    def table(self) -> Table:
        """The domain table."""
        table: Table = self.model.__table__
        return table


PROJECTORS: dict[str, Projector] = {}
_BY_CLASS: dict[type, Projector] = {}


def register(projector: Projector) -> Projector:
    """Make ``projector``'s type live in its domain table too."""
    PROJECTORS[projector.resource_type] = projector
    _BY_CLASS[projector.model] = projector
    return projector


def keeping_extra(mapping: ModuleType) -> ResourceOf:
    """A projector's ``to_resource`` from a mapping module with ``to_resource(row, extra=)`` and
    ``extra(resource)``: the row's resource plus what the stored version has beyond the row."""

    def to_resource(row: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
        extra = mapping.extra(stored) if stored else None  # noqa: S610 (a FHIR mapping, not Django)
        resource: dict[str, Any] = mapping.to_resource(row, extra=extra)
        return resource

    return to_resource


def as_uuid(id_: str) -> uuid.UUID | None:
    """The id as a UUID when it is one in canonical form, or None: client-chosen ids like
    ``example`` have no domain row, and neither do other spellings of a UUID (FHIR ids are
    case-sensitive, so ``5B0A…`` and ``5b0a…`` are two resources, while the domain row of either
    would be the one row ``5b0a…``)."""
    try:
        key = uuid.UUID(id_)
    except ValueError:
        return None
    return key if str(key) == id_ else None


# ------------------------------------------------------------------------------ FHIR → domain


@dataclass(frozen=True)
class DomainStatement:
    """An upsert or delete of a projector's rows, not yet run: alone (`run`) or as a CTE of the
    statement writing the FHIR versions (`as_cte`), which then commits or fails with them."""

    projector: Projector
    #: (first parameter number, SQL selecting the ids of the versions written, or None) → SQL.
    render: Callable[[int, str | None], str]
    args: list[Any]

    async def run(self, conn: asyncpg.Connection) -> None:
        """Run it as a statement of its own."""
        try:
            await conn.execute(self.render(1, None), *self.args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise domain_conflict(self.projector, exc) from None

    def as_cte(self) -> repo.Cte:
        """It as a CTE of the FHIR write: rows only for the versions that write wrote."""
        written = f"SELECT id FROM up WHERE resource_type = '{self.projector.resource_type}'"
        return repo.Cte(lambda first: self.render(first, written), self.args)


def domain_conflict(projector: Projector, exc: asyncpg.IntegrityConstraintViolationError) -> Conflict:
    """409 for a domain write the database refused (e.g. a double booking, a race)."""
    name = getattr(exc, "constraint_name", None) or ""
    return Conflict(
        f"{projector.resource_type} conflicts with a record that exists ({name or 'constraint'}).",
        code=projector.constraint_codes.get(name, "domain_conflict"),
    )


async def project_writes(
    conn: asyncpg.Connection, projector: Projector, writes: Sequence[repo.Write]
) -> list[DomainStatement]:
    """The upserts and deletes of the rows of ``writes`` (one type), after the lookups and checks
    they need; versions the domain amended (an MRN assigned) are changed in place."""
    keyed = [(w, key) for w in writes if (key := as_uuid(w.id)) is not None]
    if not keyed:
        return []
    existing: dict[uuid.UUID, asyncpg.Record] = {}
    wanted: list[uuid.UUID] = []
    for w, key in keyed:
        if w.method == "POST":  # a POST's id is one the server just made up
            continue
        if w.prior is not None and w.prior.row_read:  # read along with the version it follows
            if w.prior.row is not None:
                existing[key] = w.prior.row
        else:
            wanted.append(key)
    if wanted:
        match, ids = repo.any_of("id", 1, wanted, "uuid")
        looked_up = await conn.fetch(projector.rows_by_id_sql(match, len(wanted)), ids)
        existing.update((r["id"], r) for r in looked_up)
    deletes = [k for w, k in keyed if w.resource is None and k in existing]
    if deletes and projector.check_delete is not None:
        await projector.check_delete(conn, [existing[k] for k in deletes])
    statements = [_delete_rows(projector, deletes)] if deletes else []
    candidates: list[Candidate] = []
    for w, key in keyed:
        if w.resource is None:
            continue
        # The dict `prepare` serialised (a completer's amendment is written back below), else the text.
        resource = w.document if w.document is not None else orjson.loads(w.resource)
        problem = projector.screen(resource) if projector.screen is not None else None
        if problem is not None:
            candidates.append(Candidate(key, resource, {}, existing.get(key), problem))
            continue
        try:
            row = projector.to_row(resource)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # e.g. a partial dateTime
            candidates.append(Candidate(key, resource, {}, existing.get(key), f"unreadable ({exc})"))
            continue
        candidates.append(Candidate(key, resource, row, existing.get(key)))
    await _check(conn, projector, [c for c in candidates if c.problem is None])
    if projector.complete is not None:
        await projector.complete(conn, [c for c in candidates if c.problem is None])
    _check_lengths(projector, candidates)
    refused = [c for c in candidates if c.problem is not None and c.existing is not None]
    if refused:
        raise ValidationFailed(
            f"{projector.resource_type}/{refused[0].id} cannot be saved: {refused[0].problem}.",
            code="domain_constraint",
            errors=[
                field_error(projector.resource_type, str(c.problem), "domain_constraint") for c in refused
            ],
        )
    rows = [c for c in candidates if c.problem is None]
    if rows:
        statements.append(_upsert(projector, rows))
    by_id = {w.id: w for w in writes}
    for c in rows:
        if c.amended:  # the caller answers with the version as stored, so amend it in place
            w = by_id[str(c.id)]
            again = prepare(
                c.resource,
                resource_type=w.resource_type,
                id_=w.id,
                version_id=w.version_id,
                now=w.last_updated,
                method=w.method,
            )
            w.resource, w.patient_ref, w.index = again.resource, again.patient_ref, again.index
            w.document = again.document
    return statements


async def _check(conn: asyncpg.Connection, projector: Projector, candidates: list[Candidate]) -> None:
    """Set ``problem`` on candidates that lack a required field or a required reference target."""
    for c in candidates:
        for name in projector.required:
            if c.row.get(name) in (None, ""):
                c.problem = f"{name} is required"
    wanted = {
        column: list({c.row[column] for c in candidates if c.row.get(column) is not None})
        for column in projector.references
    }
    wanted = {column: ids for column, ids in wanted.items() if ids}
    if not wanted:
        return
    # Every referenced table in one round trip: (column number, id) of the rows that exist.
    matches = [repo.any_of("id", n + 1, ids, "uuid") for n, ids in enumerate(wanted.values())]
    lookups = " UNION ALL ".join(
        f"SELECT {n} AS n, id FROM {projector.references[column]} WHERE {matches[n][0]}"
        for n, column in enumerate(wanted)
    )
    found = {(r["n"], r["id"]) for r in await conn.fetch(lookups, *(value for _, value in matches))}
    for n, column in enumerate(wanted):
        for c in candidates:
            if c.row.get(column) is not None and (n, c.row[column]) not in found:
                if column in projector.required:
                    c.problem = f"{column} refers to a record that is not registered here"
                else:
                    c.row[column] = None


def _check_lengths(projector: Projector, candidates: list[Candidate]) -> None:
    """Set ``problem`` on candidates with a value longer than its column (after ``complete``)."""
    limits = _string_lengths(projector.table)
    for c in candidates:
        for name, value in c.row.items():
            length = limits[name]
            if length and isinstance(value, str) and len(value) > length:
                c.problem = f"{name} is longer than {length} characters"


@functools.cache
def _string_lengths(table: Table) -> dict[str, int | None]:
    """Column → its length when it is a String of limited length (else None)."""
    return {
        column.name: getattr(column.type, "length", None) if isinstance(column.type, String) else None
        for column in table.c
    }


@functools.cache
def _cast(column: Any) -> tuple[str, bool]:
    """(SQL type for the unnest array, whether the value travels as JSON text)."""
    if isinstance(column.type, JSON):
        return "text", True
    return column.type.compile(dialect=_DIALECT), False


def _upsert(projector: Projector, rows: list[Candidate]) -> DomainStatement:
    table = projector.table
    names = sorted({name for c in rows for name in c.row} - _MANAGED)
    resets = [n for n in projector.delete_sets if n not in names]
    arrays: list[Any] = [[c.id for c in rows]]
    casts = ["uuid"]
    selects = ["u.c0"]
    for i, name in enumerate(names, start=1):
        sql_type, as_json = _cast(table.c[name])
        casts.append(sql_type)
        values = [c.row.get(name) for c in rows]
        arrays.append(
            [None if v is None else orjson.dumps(v).decode() for v in values] if as_json else values
        )
        selects.append(f"u.c{i}::jsonb" if as_json else f"u.c{i}")
    aliases = ", ".join(f"c{i}" for i in range(len(casts)))
    # Columns the ORM fills with a Python-side default (version = 1, active = true…) on insert:
    # (parameter index, SQL type, as JSON).
    defaults = [
        c
        for c in table.c
        if c.name not in names and c.name != "id" and c.default is not None and c.default.is_scalar
    ]
    constants: list[tuple[int, str, bool]] = []
    for column in defaults:
        sql_type, as_json = _cast(column)
        value = column.default.arg  # type: ignore[union-attr]
        arrays.append(orjson.dumps(value).decode() if as_json else value)
        constants.append((len(arrays) - 1, sql_type, as_json))
    columns = ", ".join(["id", *names, *(c.name for c in defaults)])
    updates = [f"{n} = EXCLUDED.{n}" for n in names] + [f"{n} = DEFAULT" for n in resets]
    if "version" in table.c:
        updates.append("version = t.version + 1")
    if "updated_at" in table.c:
        updates.append("updated_at = now()")

    def render(first: int, written: str | None) -> str:
        params = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(casts))
        values = selects + [
            f"${first + i}::{sql_type}" + ("::jsonb" if as_json else "") for i, sql_type, as_json in constants
        ]
        where = f" WHERE u.c0::text IN ({written})" if written else ""
        return (
            f"INSERT INTO {table.name} AS t ({columns}) "
            f"SELECT {', '.join(values)} FROM unnest({params}) AS u({aliases}){where} "
            f"ON CONFLICT ({', '.join(projector.upsert_key)}) DO UPDATE SET {', '.join(updates)}"
        )

    return DomainStatement(projector, render, arrays)


def _delete_rows(projector: Projector, ids: list[uuid.UUID]) -> DomainStatement:
    table = projector.table
    sets = [f"{n} = {expr}" for n, expr in projector.delete_sets.items()]
    if sets and "version" in table.c:
        sets.append("version = version + 1")
    if sets and "updated_at" in table.c:
        sets.append("updated_at = now()")

    def render(first: int, written: str | None) -> str:
        where = f"id = ANY(${first}::uuid[])" + (f" AND id::text IN ({written})" if written else "")
        if not sets:
            return f"DELETE FROM {table.name} WHERE {where}"
        return f"UPDATE {table.name} SET {', '.join(sets)} WHERE {where}"

    return DomainStatement(projector, render, [ids])


# ------------------------------------------------------------------------------ domain → FHIR

_TOUCHED = "fhir_projection_touched"


@event.listens_for(Session, "after_flush")
def _note_flushed(session: Session, _context: Any) -> None:
    """Remember the projected rows this flush wrote (their FHIR versions follow before commit)."""
    touched: set[tuple[str, uuid.UUID]] | None = None
    for obj in (*session.new, *session.dirty, *session.deleted):
        projector = _BY_CLASS.get(type(obj))
        if projector is None or (obj in session.dirty and not session.is_modified(obj)):
            continue
        if touched is None:
            touched = session.info.setdefault(_TOUCHED, set())
        touched.add((projector.resource_type, obj.id))


def note_patient_rows(session: Session | AsyncSession, *patient_ids: uuid.UUID) -> None:
    """Re-project every row of these patients before commit (after SQL that bypassed the ORM)."""
    session.info.setdefault(_TOUCHED + ":patients", set()).update(patient_ids)


async def sync_from_domain(session: AsyncSession) -> None:
    """Write the FHIR version of every projected row this transaction changed through the ORM."""
    await session.flush()
    touched: set[tuple[str, uuid.UUID]] = session.info.pop(_TOUCHED, set())
    patients: set[uuid.UUID] = session.info.pop(_TOUCHED + ":patients", set())
    if not touched and not patients:
        return
    conn = await repo.connection(session)
    if patients:
        for projector in PROJECTORS.values():
            table = projector.table
            if projector.patient_column and projector.patient_column in table.c:
                sql = f"SELECT id FROM {table.name} WHERE {projector.patient_column} = ANY($1::uuid[])"
                touched.update(
                    (projector.resource_type, r["id"]) for r in await conn.fetch(sql, list(patients))
                )
        touched.update(("Patient", p) for p in patients if "Patient" in PROJECTORS)
    by_type: dict[str, list[uuid.UUID]] = {}
    for resource_type, id_ in touched:
        by_type.setdefault(resource_type, []).append(id_)
    for resource_type in sorted(by_type, key=lambda t: PROJECTORS[t].rank):
        await write_rows(conn, PROJECTORS[resource_type], by_type[resource_type])


async def write_rows(conn: asyncpg.Connection, projector: Projector, ids: Iterable[uuid.UUID]) -> int:
    """New FHIR versions for these domain rows (tombstones for deleted ones) and the resources
    derived from them; returns how many."""
    wanted = list(ids)
    match, values = repo.any_of("id", 1, wanted, "uuid")
    rows = [dict(r) for r in await conn.fetch(projector.rows_by_id_sql(match, len(wanted)), values)]
    derived = [d for row in rows if not projector.is_deleted(row) for d in projector.derived(row)]
    keys = [(projector.resource_type, str(r["id"])) for r in rows] + [
        (d["resourceType"], d["id"]) for d in derived
    ]
    current = await repo.read_many(conn, keys, lock=True)
    now = datetime.now(UTC)
    writes: list[repo.Write] = []
    for row in rows:
        key = (projector.resource_type, str(row["id"]))
        stored = current.get(key)
        if projector.is_deleted(row):
            if stored is not None and not stored.deleted:
                writes.append(
                    repo.Write(*key, stored.version_id + 1, now, "DELETE", None, stored.patient_ref, None)
                )
            continue
        before = orjson.loads(stored.resource) if stored is not None and stored.resource else None
        writes.extend(_version(key, stored, projector.to_resource(row, before), before, now))
    for resource in derived:
        key = (resource["resourceType"], resource["id"])
        stored = current.get(key)
        before = orjson.loads(stored.resource) if stored is not None and stored.resource else None
        writes.extend(_version(key, stored, resource, before, now))
    if writes:
        await repo.write(conn, writes)
    return len(writes)


def _version(
    key: tuple[str, str],
    stored: repo.Current | None,
    resource: dict[str, Any],
    before: dict[str, Any] | None,
    now: datetime,
) -> list[repo.Write]:
    """The next version of ``key`` holding ``resource`` (none when it adds nothing to ``before``)."""
    if before is not None and _same(resource, before):
        return []
    version = 1 if stored is None else stored.version_id + 1
    method = "POST" if stored is None else "PUT"
    return [prepare(resource, resource_type=key[0], id_=key[1], version_id=version, now=now, method=method)]


def _same(resource: dict[str, Any], stored: dict[str, Any]) -> bool:
    """True when ``resource`` adds nothing to the stored version (meta aside)."""
    strip = {k: v for k, v in stored.items() if k != "meta"}
    same: bool = orjson.loads(dumps({k: v for k, v in resource.items() if k != "meta"})) == strip
    return same


db.register_before_commit(sync_from_domain)


# ------------------------------------------------------------------------------ backfill


def _missing_sql(projector: Projector, *, everything: bool) -> str:
    """Rows of the projector's table (after ``$2``, keyset by id) lacking a FHIR version (or all)."""
    missing = (
        "TRUE"
        if everything
        else "NOT EXISTS (SELECT 1 FROM fhir_resources r WHERE r.resource_type = $1 AND r.id = t.id::text)"
    )
    return f"FROM {projector.table.name} t WHERE {missing} AND t.id > $2"


async def backfill(
    database: db.Database,
    projector: Projector,
    *,
    everything: bool = False,
    batch: int = 500,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Write the FHIR version of every domain row that has none (``everything``: of every row).

    For rows written without the ORM (bulk loads, `hims bench generate`, data from before this
    release). One transaction per ``batch`` rows; ``on_batch(rows_seen, versions_written)``
    reports progress. Returns the number of versions written.
    """
    written = 0
    after = uuid.UUID(int=0)
    sql = _missing_sql(projector, everything=everything)
    while True:
        async with database.transaction() as session:
            conn = await repo.connection(session)
            ids = [
                r["id"]
                for r in await conn.fetch(
                    f"SELECT t.id {sql} ORDER BY t.id LIMIT $3", projector.resource_type, after, batch
                )
            ]
            if not ids:
                return written
            count = await write_rows(conn, projector, ids)
        written += count
        after = ids[-1]
        if on_batch is not None:
            on_batch(len(ids), count)


async def backfill_total(database: db.Database, projector: Projector, *, everything: bool = False) -> int:
    """How many rows `backfill` would look at."""
    async with database.transaction() as session:
        conn = await repo.connection(session)
        sql = _missing_sql(projector, everything=everything)
        return int(await conn.fetchval(f"SELECT count(*) {sql}", projector.resource_type, uuid.UUID(int=0)))
