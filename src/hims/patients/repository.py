"""All SQL of the patients domain, on the driver connection (asyncpg).

Writes go through `hims.core.records.write`: one statement with the PHI log rows and the record's
views; reads that disclose patients take the log part into their own statement, so an access and
its log row commit together without a transaction.
"""

# SQL is assembled from fixed fragments and our column names; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from hims.core import records
from hims.core.records import Part, Row
from hims.core.security import Actor
from hims.patients.models import Patient

TABLE = records.table_of(Patient)
#: Every stored column (the generated search keys aside).
COLUMNS = records.writable_columns(TABLE)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM patients"
#: What a list or search shows, plus the keys its keyset paging continues from.
SUMMARY = (
    "id, mrn, given_name, middle_name, family_name, date_of_birth, sex_at_birth, "
    "family_name_key, given_name_key"
)
_LIVE = "deleted_at IS NULL AND merged_into_id IS NULL"
#: What `write` returns of each row written.
RETURNING = "t.id, t.id AS patient_id, t.version"

_extensions: weakref.WeakKeyDictionary[asyncpg.Connection, frozenset[str]] = weakref.WeakKeyDictionary()


def row_of(record: asyncpg.Record | None) -> Row | None:
    """A stored row as a plain dict (None stays None)."""
    return dict(record) if record is not None else None


async def installed_extensions(conn: asyncpg.Connection) -> frozenset[str]:
    """Extensions present in this database (asked once per connection)."""
    found = _extensions.get(conn)
    if found is None:
        found = frozenset(r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension"))
        _extensions[conn] = found
    return found


async def next_mrn_number(conn: asyncpg.Connection) -> int:
    """The next value of ``patients_mrn_seq``."""
    return int(await conn.fetchval("SELECT nextval('patients_mrn_seq')"))


async def mrn_taken(conn: asyncpg.Connection, mrn: str) -> bool:
    """Whether a patient (any state) holds ``mrn``."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM patients WHERE mrn = $1)", mrn))


async def name_keys(conn: asyncpg.Connection, *values: str) -> list[str]:
    """Normalise search terms exactly as the stored keys are (``hims_name_key``)."""
    if not values:
        return []
    keys = ", ".join(f"hims_name_key(${i}::text)" for i in range(1, len(values) + 1))
    row = await conn.fetchrow(f"SELECT {keys}", *values)
    assert row is not None
    return [str(v or "") for v in row]


async def get(conn: asyncpg.Connection, patient_id: uuid.UUID, *, lock: bool = False) -> Row | None:
    """One patient by id (any state)."""
    sql = _SELECT + " WHERE id = $1" + (" FOR UPDATE" if lock else "")
    return row_of(await conn.fetchrow(sql, patient_id))


async def get_many(
    conn: asyncpg.Connection, patient_ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Patients by id (any state), locked in id order when ``lock`` (no deadlock between two
    transactions locking the same patients)."""
    if not patient_ids:
        return {}
    match, value = records.any_of("id", 1, sorted(set(patient_ids)), "uuid")
    sql = f"{_SELECT} WHERE {match} ORDER BY id" + (" FOR UPDATE" if lock else "")
    return {r["id"]: dict(r) for r in await conn.fetch(sql, value)}


async def get_logged(conn: asyncpg.Connection, patient_id: uuid.UUID, log: Part) -> Row | None:
    """One patient, with ``log`` (reading CTE ``found``: the patient when not deleted) in the same
    statement: the read and its PHI log row commit together, with no transaction."""
    found = Part("found", lambda first: f"{_SELECT} WHERE id = ${first}", [patient_id], "patient")
    sql, args = records.compose([found, log], "SELECT * FROM found")
    return row_of(await conn.fetchrow(sql, *args))


async def live_state(conn: asyncpg.Connection, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
    """For other domains checking references: id → (deleted_at, merged_into_id) of these patients."""
    if not patient_ids:
        return {}
    match, value = records.any_of("id", 1, list(set(patient_ids)), "uuid")
    rows = await conn.fetch(f"SELECT id, deleted_at, merged_into_id FROM patients WHERE {match}", value)
    return {r["id"]: dict(r) for r in rows}


async def insert(conn: asyncpg.Connection, actor: Actor, rows: Sequence[Row], also: Sequence[Part]) -> int:
    """Insert new patients (complete rows); returns how many were written."""
    main = records.insert_part(TABLE, rows, returning=RETURNING)
    return len(await records.write(conn, actor, "patients", main, rows, also=also))


async def update(
    conn: asyncpg.Connection,
    actor: Actor,
    rows: Sequence[Row],
    also: Sequence[Part],
    *,
    columns: Sequence[str] | None = None,
    deleting: bool = False,
) -> set[uuid.UUID]:
    """Write new versions of patients (each row's ``version`` is the new one; a row whose stored
    version is not the one before is not written); returns the ids written."""
    changed = columns or [c for c in COLUMNS if c not in ("id", "created_at", "mrn")]
    main = records.update_part(TABLE, rows, columns=changed, returning=RETURNING)
    written = await records.write(conn, actor, "patients", main, rows, also=also, deleting=deleting)
    return {r["id"] for r in written}


# ------------------------------------------------------------------------------ search


def prefix_range(column: str, key_param: str, upper_param: str) -> str:
    """``column`` starts with a key, as a range a "C"-collation btree serves directly."""
    return f"({column} >= {key_param} AND {column} < {upper_param})"


def upper_bound(key: str) -> str:
    """The smallest string after every string starting with ``key``."""
    return key[:-1] + chr(ord(key[-1]) + 1)


@dataclass
class SearchFilter:
    """Normalised search criteria (keys already produced by ``hims_name_key``)."""

    family_key: str | None = None
    given_key: str | None = None
    birth_date: date | None = None
    mrn: str | None = None
    phone_digits: str | None = None
    any_name_keys: tuple[str, ...] = ()  # q=: each token a prefix of family or given name


def given_first(criteria: SearchFilter) -> bool:
    """Given-name-only searches walk the (given, family, id) index instead of (family, given, id)."""
    return bool(criteria.given_key) and not criteria.family_key and not criteria.any_name_keys


class _Args:
    def __init__(self, first: int) -> None:
        self.first = first
        self.values: list[Any] = []

    def add(self, value: Any, sql_type: str) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}::{sql_type}"


def search_sql(
    criteria: SearchFilter, *, limit: int, after: tuple[str, str, uuid.UUID] | None, first: int
) -> tuple[str, list[Any]]:
    """The exact-prefix search, in index order for keyset paging: (family, given, id), or
    (given, family, id) when only a given name is searched. ``after`` is in the same order."""
    args = _Args(first)
    where = [_LIVE]

    def prefix(column: str, key: str) -> str:
        return prefix_range(column, args.add(key, "text"), args.add(upper_bound(key), "text"))

    if criteria.family_key:
        where.append(prefix("family_name_key", criteria.family_key))
    if criteria.given_key:
        where.append(prefix("given_name_key", criteria.given_key))
    if criteria.birth_date:
        where.append(f"date_of_birth = {args.add(criteria.birth_date, 'date')}")
    if criteria.mrn:
        where.append(f"mrn = {args.add(criteria.mrn, 'text')}")
    if criteria.phone_digits:
        where.append(f"phone_digits = {args.add(criteria.phone_digits, 'text')}")
    tokens = criteria.any_name_keys
    if len(tokens) == 1:
        where.append(f"({prefix('family_name_key', tokens[0])} OR {prefix('given_name_key', tokens[0])})")
    elif len(tokens) >= 2:
        a, b = tokens[0], tokens[-1]
        where.append(
            f"(({prefix('family_name_key', a)} AND {prefix('given_name_key', b)}) OR "
            f"({prefix('family_name_key', b)} AND {prefix('given_name_key', a)}))"
        )
    order = (
        ("given_name_key", "family_name_key", "id")
        if given_first(criteria)
        else ("family_name_key", "given_name_key", "id")
    )
    if after is not None:
        where.append(
            f"({', '.join(order)}) > ({args.add(after[0], 'text')}, {args.add(after[1], 'text')}, "
            f"{args.add(after[2], 'uuid')})"
        )
    sql = (
        f"SELECT {SUMMARY}, row_number() OVER () AS n FROM (SELECT {SUMMARY} FROM patients "
        f"WHERE {' AND '.join(where)} ORDER BY {', '.join(order)} LIMIT {int(limit)}) s"
    )
    return sql, args.values


async def search(
    conn: asyncpg.Connection,
    criteria: SearchFilter,
    *,
    limit: int,
    after: tuple[str, str, uuid.UUID] | None,
    log: Part | None = None,
) -> list[asyncpg.Record]:
    """Up to ``limit`` live patients (summary columns and their position ``n``) for an
    exact-prefix search; ``log`` (reading CTE ``found``) runs in the same statement."""
    sql, values = search_sql(criteria, limit=limit, after=after, first=1)
    if log is None:
        return list(await conn.fetch(sql, *values))
    found = Part(
        "found", lambda first: search_sql(criteria, limit=limit, after=after, first=first)[0], values, None
    )
    text, args = records.compose([found, log], "SELECT * FROM found ORDER BY n")
    return list(await conn.fetch(text, *args))


async def fuzzy_search(
    conn: asyncpg.Connection,
    *,
    family_key: str | None,
    given_key: str | None,
    any_key: str | None,
    limit: int,
    offset: int,
) -> list[asyncpg.Record]:
    """Trigram (pg_trgm) and phonetic (fuzzystrmatch double metaphone) matches, best first."""
    args = _Args(1)
    parts: list[str] = []
    filters: list[str] = []

    def signal(column: str, key: str) -> tuple[str, str]:
        value = args.add(key, "text")
        filters.append(f"{column} % {value}")
        filters.append(
            f"(soundex({column}) = soundex({value}) AND dmetaphone({column}) = dmetaphone({value}))"
        )
        return f"similarity({column}, {value})", f"(dmetaphone({column}) = dmetaphone({value}))::int"

    if family_key:
        sim, phon = signal("family_name_key", family_key)
        parts.append(f"0.6 * {sim} + 0.25 * {phon}")
    if given_key:
        sim, phon = signal("given_name_key", given_key)
        parts.append(f"0.4 * {sim} + 0.15 * {phon}")
    if any_key:
        fam_sim, fam_phon = signal("family_name_key", any_key)
        giv_sim, giv_phon = signal("given_name_key", any_key)
        parts.append(f"greatest(0.8 * {fam_sim} + 0.2 * {fam_phon}, 0.8 * {giv_sim} + 0.2 * {giv_phon})")
    score = f"least(1.0, {' + '.join(parts)})"
    sql = (
        f"SELECT {SUMMARY}, {score} AS score FROM patients WHERE {_LIVE} AND ({' OR '.join(filters)}) "
        f"ORDER BY score DESC, id LIMIT {args.add(limit, 'int')} OFFSET {args.add(offset, 'int')}"
    )
    return list(await conn.fetch(sql, *args.values))


# ------------------------------------------------------------------------------ duplicates


#: Live patients who could be the same person as a registration (blocking for
#: ``hims.patients.matching``, which decides). Each branch is one index: birth date or its day/month
#: swap (ix_patients_date_of_birth); the same given and family name with a mistyped birth date
#: (ix_patients_family_given_key); phone digits, e-mail and national id in any spelling
#: (ix_patients_phone_digits, ix_patients_email_key, ix_patients_national_id_keys). No extension
#: is needed: names are compared fuzzily in Python on these few rows.
DUPLICATE_CANDIDATES_SQL = """
SELECT p.id, p.mrn, p.given_name, p.middle_name, p.family_name, p.date_of_birth, p.sex_at_birth,
       p.phone, p.email, p.address_line, p.postal_code,
       hims_national_id_keys(p.identifiers) AS national_id_keys
FROM patients AS p
WHERE p.id IN (
    SELECT id FROM patients
    WHERE date_of_birth = ANY($1::date[]) AND deleted_at IS NULL AND merged_into_id IS NULL
    UNION
    SELECT id FROM patients
    WHERE family_name_key = hims_name_key($2::text) AND given_name_key = hims_name_key($3::text)
      AND date_of_birth = ANY($4::date[]) AND deleted_at IS NULL AND merged_into_id IS NULL
    UNION
    SELECT id FROM patients
    WHERE phone_digits = $5::text AND deleted_at IS NULL AND merged_into_id IS NULL
    UNION
    SELECT id FROM patients
    WHERE email_key = lower($6::text) AND deleted_at IS NULL AND merged_into_id IS NULL
    UNION
    SELECT id FROM patients
    WHERE hims_national_id_keys(identifiers) && $7::text[] AND deleted_at IS NULL AND merged_into_id IS NULL
)
ORDER BY p.id
LIMIT $8
"""


async def lock_keys(conn: asyncpg.Connection, keys: Sequence[str], *, next_mrn: bool = False) -> int | None:
    """Transaction-level advisory locks on ``keys``, taken in one order (no deadlock between two
    callers locking overlapping keys); held until the caller's transaction ends. With
    ``next_mrn``, also the next value of ``patients_mrn_seq`` (taken after the locks)."""
    value = await conn.fetchval(
        "WITH locked AS MATERIALIZED (SELECT count(pg_advisory_xact_lock(h)) AS n FROM "
        "(SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS s) "
        "SELECT CASE WHEN $2::boolean THEN nextval('patients_mrn_seq') END FROM locked",
        list(keys),
        next_mrn,
    )
    return int(value) if value is not None else None


async def duplicate_candidate_rows(
    conn: asyncpg.Connection,
    *,
    birth_dates: list[date],
    family_name: str,
    given_name: str,
    mistyped_birth_dates: Sequence[date],
    phone_digits: str | None,
    email: str | None,
    national_id_keys: list[str],
    limit: int = 500,
) -> list[asyncpg.Record]:
    """Live patients sharing a blocking key with a registration (see DUPLICATE_CANDIDATES_SQL):
    id, mrn, names, birth date, sex, phone, email, address line, postal code, national_id_keys."""
    rows: list[asyncpg.Record] = await conn.fetch(
        DUPLICATE_CANDIDATES_SQL,
        birth_dates,
        family_name,
        given_name,
        list(mistyped_birth_dates),
        phone_digits or None,
        email or None,
        national_id_keys,
        limit,
    )
    return rows


# ------------------------------------------------------------------------------ merge


async def merged_into(conn: asyncpg.Connection, patient_id: uuid.UUID, *, lock: bool) -> list[Row]:
    """Patients earlier merged into ``patient_id`` (locked when ``lock``)."""
    sql = f"{_SELECT} WHERE merged_into_id = $1 ORDER BY id" + (" FOR UPDATE" if lock else "")
    return [dict(r) for r in await conn.fetch(sql, patient_id)]
