"""All SQL of the patients domain."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
from sqlalchemy import Integer, and_, cast, func, literal, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from hims.patients.models import MRN_SEQUENCE, Patient

#: Columns a summary needs (lists never load the full record).
SUMMARY_COLUMNS = (
    Patient.id,
    Patient.mrn,
    Patient.given_name,
    Patient.middle_name,
    Patient.family_name,
    Patient.date_of_birth,
    Patient.sex_at_birth,
    Patient.family_name_key,
    Patient.given_name_key,
)


async def next_mrn_number(session: AsyncSession) -> int:
    """The next value of ``patients_mrn_seq``."""
    value = await session.scalar(select(MRN_SEQUENCE.next_value()))
    return int(value)  # type: ignore[arg-type]


async def name_keys(session: AsyncSession, *values: str) -> list[str]:
    """Normalise search terms exactly as the stored keys are (``hims_name_key``)."""
    if not values:
        return []
    row = (await session.execute(select(*(func.hims_name_key(literal(v)) for v in values)))).one()
    return [str(v or "") for v in row]


async def installed_extensions(session: AsyncSession) -> set[str]:
    """Extensions present in this database (cached for the session)."""
    cached = session.info.get("hims_extensions")
    if cached is None:
        rows = await session.execute(text("SELECT extname FROM pg_extension"))
        cached = {r[0] for r in rows}
        session.info["hims_extensions"] = cached
    return set(cached)


async def get(session: AsyncSession, patient_id: uuid.UUID, *, for_update: bool = False) -> Patient | None:
    """One patient by id (any state)."""
    stmt = select(Patient).where(Patient.id == patient_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_pair(session: AsyncSession, a: uuid.UUID, b: uuid.UUID) -> dict[uuid.UUID, Patient]:
    """Lock two patients in id order (no deadlock between concurrent merges)."""
    rows = await session.execute(
        select(Patient).where(Patient.id.in_([a, b])).order_by(Patient.id).with_for_update()
    )
    return {p.id: p for p in rows.scalars()}


def _flag(condition: Any) -> Any:
    """A boolean as 0/1 for scoring."""
    return cast(condition, Integer)


def _live() -> Any:
    return and_(Patient.deleted_at.is_(None), Patient.merged_into_id.is_(None))


def prefix_range(column: Any, key: str) -> Any:
    """``column`` starts with ``key``, as a range a "C"-collation btree serves directly."""
    upper = key[:-1] + chr(ord(key[-1]) + 1)
    return and_(column >= key, column < upper)


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


def search_statement(criteria: SearchFilter, *, limit: int, after: tuple[str, str, uuid.UUID] | None) -> Any:
    """The exact-prefix search query, in index order for keyset paging: (family, given, id), or
    (given, family, id) when only a given name is searched. ``after`` is in the same order."""
    stmt: Any = select(*SUMMARY_COLUMNS).where(_live())
    if criteria.family_key:
        stmt = stmt.where(prefix_range(Patient.family_name_key, criteria.family_key))
    if criteria.given_key:
        stmt = stmt.where(prefix_range(Patient.given_name_key, criteria.given_key))
    if criteria.birth_date:
        stmt = stmt.where(Patient.date_of_birth == criteria.birth_date)
    if criteria.mrn:
        stmt = stmt.where(Patient.mrn == criteria.mrn)
    if criteria.phone_digits:
        stmt = stmt.where(Patient.phone_digits == criteria.phone_digits)
    tokens = criteria.any_name_keys
    if len(tokens) == 1:
        stmt = stmt.where(
            or_(
                prefix_range(Patient.family_name_key, tokens[0]),
                prefix_range(Patient.given_name_key, tokens[0]),
            )
        )
    elif len(tokens) >= 2:
        first, second = tokens[0], tokens[-1]
        stmt = stmt.where(
            or_(
                and_(
                    prefix_range(Patient.family_name_key, first), prefix_range(Patient.given_name_key, second)
                ),
                and_(
                    prefix_range(Patient.family_name_key, second), prefix_range(Patient.given_name_key, first)
                ),
            )
        )
    order = (
        (Patient.given_name_key, Patient.family_name_key, Patient.id)
        if given_first(criteria)
        else (Patient.family_name_key, Patient.given_name_key, Patient.id)
    )
    if after is not None:
        stmt = stmt.where(tuple_(*order) > tuple_(*after))
    return stmt.order_by(*order).limit(limit)


async def search(
    session: AsyncSession, criteria: SearchFilter, *, limit: int, after: tuple[str, str, uuid.UUID] | None
) -> list[Any]:
    """Rows of SUMMARY_COLUMNS for an exact-prefix search."""
    return list((await session.execute(search_statement(criteria, limit=limit, after=after))).all())


async def fuzzy_search(
    session: AsyncSession,
    *,
    family_key: str | None,
    given_key: str | None,
    any_key: str | None,
    limit: int,
    offset: int,
) -> list[Any]:
    """Trigram (pg_trgm) and phonetic (fuzzystrmatch double metaphone) matches, best first."""
    parts: list[Any] = []
    filters: list[Any] = []

    def signal(column: Any, key: str) -> tuple[Any, Any]:
        similarity = func.similarity(column, key)
        phonetic = func.dmetaphone(column) == func.dmetaphone(key)
        filters.append(column.op("%")(key))
        filters.append(and_(func.soundex(column) == func.soundex(key), phonetic))
        return similarity, phonetic

    if family_key:
        sim, phon = signal(Patient.family_name_key, family_key)
        parts.append(0.6 * sim + 0.25 * _flag(phon))
    if given_key:
        sim, phon = signal(Patient.given_name_key, given_key)
        parts.append(0.4 * sim + 0.15 * _flag(phon))
    if any_key:
        fam_sim, fam_phon = signal(Patient.family_name_key, any_key)
        giv_sim, giv_phon = signal(Patient.given_name_key, any_key)
        parts.append(
            func.greatest(0.8 * fam_sim + 0.2 * _flag(fam_phon), 0.8 * giv_sim + 0.2 * _flag(giv_phon))
        )
    score = func.least(1.0, sum(parts[1:], parts[0])).label("score")
    stmt = (
        select(*SUMMARY_COLUMNS, score)
        .where(_live(), or_(*filters))
        .order_by(score.desc(), Patient.id)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.execute(stmt)).all())


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


async def duplicate_candidate_rows(
    conn: asyncpg.Connection,
    *,
    birth_dates: list[date],
    family_name: str,
    given_name: str,
    mistyped_birth_dates: list[date],
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
        mistyped_birth_dates,
        phone_digits or None,
        email or None,
        national_id_keys,
        limit,
    )
    return rows


async def repoint_merged_chain(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Patients earlier merged into ``from_id`` now point straight at the survivor."""
    result = await session.execute(
        update(Patient)
        .where(Patient.merged_into_id == from_id)
        .values(merged_into_id=into_id, version=Patient.version + 1)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
