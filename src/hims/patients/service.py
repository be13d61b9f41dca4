"""Patient rules: registration with duplicate detection, updates, search, soft delete, merge.

Every function that reads or writes a patient writes the PHI access log in the caller's session.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from hims.audit.service import record_phi_access
from hims.core.db import driver_connection
from hims.core.errors import Conflict, Gone, HimsError, NotFound, ValidationFailed, field_error
from hims.core.etag import check_version
from hims.core.security import Actor
from hims.patients import matching, repository
from hims.patients.merge import MERGE_HOOKS, hook_name
from hims.patients.models import Patient
from hims.patients.mrn import format_mrn, is_valid_mrn
from hims.patients.schemas import (
    DuplicateCandidate,
    PatientCreate,
    PatientSummary,
    PatientUpdate,
    display_name,
)

log = structlog.get_logger("hims.patients")

RESOURCE = "Patient"
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
MAX_PAGE = 100
REQUIRED_ON_UPDATE = ("given_name", "family_name", "date_of_birth", "sex_at_birth", "deceased")


class ExtensionMissing(HimsError):
    """501: a PostgreSQL extension this feature needs is not installed."""

    status, code, title = 501, "extension_missing", "Database extension missing"


class PossibleDuplicates(Conflict):
    """409 with scored candidates; the caller may retry with ``allow_duplicate``."""

    code = "possible_duplicates"

    def __init__(self, candidates: list[DuplicateCandidate]) -> None:
        super().__init__(
            "Patients who may be the same person already exist; check them, or create anyway "
            "with allow_duplicate=true.",
            extra={"candidates": [c.model_dump(mode="json") for c in candidates]},
        )
        self.candidates = candidates


class PatientMergedError(Conflict):
    """409: the record was merged into another and can no longer change."""

    code = "patient_merged"


@dataclass
class MergeOutcome:
    """The merged and surviving patients and the rows each hook moved."""

    merged: Patient
    survivor: Patient
    moved: dict[str, int]


# ---------------------------------------------------------------------------------------------
# validation


def _demographic_errors(
    *, date_of_birth: date, deceased: bool, deceased_at: datetime | None, today: date
) -> list[dict[str, Any]]:
    errors = []
    if date_of_birth > today:
        errors.append(field_error("date_of_birth", "The date of birth is in the future.", "future_date"))
    elif date_of_birth < EARLIEST_BIRTH_DATE:
        errors.append(field_error("date_of_birth", "The date of birth is before 1900.", "too_early"))
    if deceased_at is not None:
        if deceased_at.tzinfo is None:
            errors.append(
                field_error("deceased_at", "Give a time zone (e.g. Z or +01:00).", "naive_datetime")
            )
        elif deceased_at.date() < date_of_birth:
            errors.append(
                field_error("deceased_at", "The time of death is before the birth date.", "before_birth")
            )
        elif deceased_at > datetime.now(UTC):
            errors.append(field_error("deceased_at", "The time of death is in the future.", "future_date"))
        if not deceased:
            errors.append(
                field_error("deceased", "Set deceased to true when deceased_at is given.", "inconsistent")
            )
    return errors


def _raise_if(errors: list[dict[str, Any]]) -> None:
    if errors:
        raise ValidationFailed("The patient has invalid fields.", errors=errors)


def summary(row: Any, score: float | None = None) -> PatientSummary:
    """A PatientSummary from a Patient or a row of the repository's summary columns."""
    return PatientSummary(
        id=row.id,
        mrn=row.mrn,
        display_name=display_name(row.given_name, row.family_name, row.middle_name),
        date_of_birth=row.date_of_birth,
        sex_at_birth=row.sex_at_birth,
        score=None if score is None else round(float(score), 3),
    )


# ---------------------------------------------------------------------------------------------
# create


def _as_person(data: PatientCreate) -> matching.Person:
    return matching.Person(
        given_name=data.given_name,
        family_name=data.family_name,
        date_of_birth=data.date_of_birth,
        middle_name=data.middle_name,
        sex_at_birth=data.sex_at_birth,
        phone=data.phone,
        email=data.email,
        address_line=data.address_line,
        postal_code=data.postal_code,
        national_ids=tuple(i.value for i in data.identifiers if i.type == "national_id"),
    )


def _row_person(row: Any) -> matching.Person:
    return matching.Person(
        given_name=row["given_name"],
        family_name=row["family_name"],
        date_of_birth=row["date_of_birth"],
        middle_name=row["middle_name"],
        sex_at_birth=row["sex_at_birth"],
        phone=row["phone"],
        email=row["email"],
        address_line=row["address_line"],
        postal_code=row["postal_code"],
        national_ids=tuple(row["national_id_keys"] or ()),
    )


async def find_duplicates(
    *, session: AsyncSession, actor: Actor, data: PatientCreate
) -> list[DuplicateCandidate]:
    """Live patients that may be the same person as ``data``, best first (each logged).

    The repository fetches the patients sharing a blocking key; `hims.patients.matching` decides.
    """
    new = _as_person(data)
    born = data.date_of_birth
    rows = await repository.duplicate_candidate_rows(
        await driver_connection(session),
        birth_dates=[born, *matching.day_month_swapped(born)],
        family_name=data.family_name,
        given_name=data.given_name,
        mistyped_birth_dates=matching.birth_date_variants(born),
        phone_digits=matching.phone_digits(data.phone) or None,
        email=data.email,
        national_id_keys=sorted({matching.national_id_key(v) for v in new.national_ids} - {""}),
    )
    found = matching.duplicates(new, ((row, _row_person(row)) for row in rows))
    candidates = [
        DuplicateCandidate(
            id=row["id"],
            mrn=row["mrn"],
            display_name=display_name(row["given_name"], row["family_name"], row["middle_name"]),
            date_of_birth=row["date_of_birth"],
            score=match.score,
            reasons=list(match.reasons),
        )
        for row, match in found
    ]
    candidates.sort(key=lambda c: (-c.score, str(c.id)))
    await record_phi_access(
        session=session,
        actor=actor,
        action="duplicate_check",
        resource_type=RESOURCE,
        accesses=[(c.id, str(c.id)) for c in candidates],
    )
    return candidates


async def create_patient(
    *,
    session: AsyncSession,
    actor: Actor,
    data: PatientCreate,
    allow_duplicate: bool = False,
    check_duplicates: bool = True,
) -> Patient:
    """Register a patient with a new MRN.

    Raises PossibleDuplicates (409) when candidates exist unless ``allow_duplicate``; the
    candidates disclosed are in the PHI log (the route commits that log before answering).
    Creating over candidates is logged as ``duplicate_override`` on each candidate.
    """
    _raise_if(
        _demographic_errors(
            date_of_birth=data.date_of_birth,
            deceased=data.deceased,
            deceased_at=data.deceased_at,
            today=datetime.now(UTC).date(),
        )
    )
    candidates: list[DuplicateCandidate] = []
    if check_duplicates:
        candidates = await find_duplicates(session=session, actor=actor, data=data)
        if candidates and not (allow_duplicate or data.allow_duplicate):
            raise PossibleDuplicates(candidates)
    values = data.model_dump(exclude={"allow_duplicate"})
    values["identifiers"] = [i.model_dump() for i in data.identifiers]
    values["emergency_contact"] = data.emergency_contact.model_dump() if data.emergency_contact else None
    patient = Patient(
        id=uuid.uuid4(), mrn=format_mrn(await repository.next_mrn_number(session)), active=True, **values
    )
    session.add(patient)
    await session.flush()
    await session.refresh(patient)
    await record_phi_access(
        session=session,
        actor=actor,
        action="create",
        resource_type=RESOURCE,
        accesses=[(patient.id, str(patient.id))],
    )
    if candidates:
        await record_phi_access(
            session=session,
            actor=actor,
            action="duplicate_override",
            resource_type=RESOURCE,
            accesses=[(c.id, str(patient.id)) for c in candidates],
        )
        log.info("patient_created_over_duplicates", patient_id=str(patient.id), candidates=len(candidates))
    return patient


# ---------------------------------------------------------------------------------------------
# read, update, delete


async def _load(session: AsyncSession, patient_id: uuid.UUID, *, for_update: bool = False) -> Patient:
    patient = await repository.get(session, patient_id, for_update=for_update)
    if patient is None:
        raise NotFound("No patient with this id.", code="patient_not_found")
    if patient.deleted_at is not None:
        raise Gone("This patient record was deleted.", code="patient_deleted")
    return patient


async def get_patient(*, session: AsyncSession, actor: Actor, patient_id: uuid.UUID) -> Patient:
    """One patient (merged ones too: the caller redirects to ``merged_into_id``); logged as ``read``."""
    patient = await _load(session, patient_id)
    await record_phi_access(
        session=session,
        actor=actor,
        action="read",
        resource_type=RESOURCE,
        accesses=[(patient.id, str(patient.id))],
    )
    return patient


async def require_live_patient(
    *, session: AsyncSession, patient_id: uuid.UUID, field: str = "patient_id"
) -> Patient:
    """For other domains: the patient must exist, not be deleted or merged (422 naming ``field``)."""
    patient = await repository.get(session, patient_id)
    if patient is None or patient.deleted_at is not None:
        raise ValidationFailed(errors=[field_error(field, "No such patient.", "unknown_patient")])
    if patient.merged_into_id is not None:
        raise ValidationFailed(
            errors=[
                field_error(
                    field, f"This patient was merged into {patient.merged_into_id}.", "patient_merged"
                )
            ]
        )
    return patient


async def require_patient_record(*, session: AsyncSession, patient_id: uuid.UUID) -> Patient:
    """For other domains addressing a patient in the URL: 404 / 410 / 409 ``patient_merged``."""
    patient = await _load(session, patient_id)
    if patient.merged_into_id is not None:
        raise PatientMergedError(
            f"This patient was merged into {patient.merged_into_id}.",
            extra={"merged_into": str(patient.merged_into_id)},
        )
    return patient


async def update_patient(
    *,
    session: AsyncSession,
    actor: Actor,
    patient_id: uuid.UUID,
    data: PatientUpdate,
    expected_version: int | None,
) -> Patient:
    """Change the fields sent; 412 when ``expected_version`` is not the current one."""
    patient = await _load(session, patient_id, for_update=True)
    if patient.merged_into_id is not None:
        raise PatientMergedError(
            f"This patient was merged into {patient.merged_into_id}; update that record."
        )
    check_version(patient.version, expected_version)
    changes = data.model_dump(exclude_unset=True)
    nulls = [f for f in (*REQUIRED_ON_UPDATE, "active") if f in changes and changes[f] is None]
    _raise_if([field_error(f, "This field cannot be empty.", "required") for f in nulls])
    if "identifiers" in changes:
        changes["identifiers"] = [i.model_dump() for i in data.identifiers or []]
    if "emergency_contact" in changes:
        changes["emergency_contact"] = data.emergency_contact.model_dump() if data.emergency_contact else None
    _raise_if(
        _demographic_errors(
            date_of_birth=changes.get("date_of_birth", patient.date_of_birth),
            deceased=changes.get("deceased", patient.deceased),
            deceased_at=changes.get("deceased_at", patient.deceased_at),
            today=datetime.now(UTC).date(),
        )
    )
    for name, value in changes.items():
        setattr(patient, name, value)
    try:
        await session.flush()
    except StaleDataError:
        raise Conflict("The record changed while saving; read it again.", code="version_mismatch") from None
    await session.refresh(patient)
    await record_phi_access(
        session=session,
        actor=actor,
        action="update",
        resource_type=RESOURCE,
        accesses=[(patient.id, str(patient.id))],
    )
    return patient


async def delete_patient(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, expected_version: int | None
) -> None:
    """Soft delete: the record stays (retention) but reads answer 410 and searches skip it."""
    patient = await _load(session, patient_id, for_update=True)
    check_version(patient.version, expected_version)
    patient.deleted_at = datetime.now(UTC)
    patient.active = False
    await session.flush()
    await record_phi_access(
        session=session,
        actor=actor,
        action="delete",
        resource_type=RESOURCE,
        accesses=[(patient.id, str(patient.id))],
    )


# ---------------------------------------------------------------------------------------------
# search


@dataclass
class SearchQuery:
    """What the caller asked for (raw, as typed)."""

    family: str | None = None
    given: str | None = None
    birth_date: date | None = None
    mrn: str | None = None
    phone: str | None = None
    q: str | None = None
    fuzzy: bool = False


def _encode_cursor(value: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        value = None
    if not isinstance(value, list):
        raise ValidationFailed(
            errors=[field_error("cursor", "Not a cursor this API returned.", "invalid_cursor")]
        )
    return value


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


async def search_patients(
    *, session: AsyncSession, actor: Actor, query: SearchQuery, limit: int = 20, cursor: str | None = None
) -> tuple[list[PatientSummary], str | None]:
    """Summaries of live patients matching ``query``; one ``search`` PHI row per patient returned.

    Names match by prefix, ignoring case and accents; ``fuzzy`` ranks trigram and phonetic matches.
    """
    limit = max(1, min(limit, MAX_PAGE))
    errors = []
    criteria = repository.SearchFilter(birth_date=query.birth_date)
    if query.mrn is not None:
        if not is_valid_mrn(query.mrn.strip()):
            errors.append(
                field_error("mrn", "Not a valid MRN (10 digits with a check digit).", "invalid_mrn")
            )
        criteria.mrn = query.mrn.strip()
    if query.phone is not None:
        digits = re.sub(r"\D", "", query.phone)
        if len(digits) < 4:
            errors.append(field_error("phone", "Give at least 4 digits.", "too_short"))
        criteria.phone_digits = digits
    raw_tokens: list[str] = []
    if query.q:
        for token in query.q.replace(",", " ").split():
            if is_valid_mrn(token):
                criteria.mrn = token
            elif _DATE.match(token):
                try:
                    criteria.birth_date = date.fromisoformat(token)
                except ValueError:
                    errors.append(field_error("q", "Not a valid date.", "invalid_date"))
            else:
                raw_tokens.append(token)
    _raise_if(errors)
    names = [query.family or "", query.given or "", *raw_tokens]
    keys = await repository.name_keys(session, *names) if any(names) else ["", ""]
    family_key, given_key, token_keys = keys[0], keys[1], [k for k in keys[2:] if k]
    for field, raw, key in (("family", query.family, family_key), ("given", query.given, given_key)):
        if raw is not None and raw.strip() and not key:
            errors.append(field_error(field, "Give at least one letter or digit.", "empty"))
    _raise_if(errors)

    results: list[PatientSummary]
    next_cursor: str | None = None
    if query.fuzzy:
        installed = await repository.installed_extensions(session)
        for extension in ("pg_trgm", "fuzzystrmatch"):
            if extension not in installed:
                raise ExtensionMissing(
                    f"Fuzzy search needs the PostgreSQL extension {extension}; ask the operator to install "
                    "PostgreSQL contrib and run `hims db migrate`.",
                    extra={"extension": extension},
                )
        if not (family_key or given_key or token_keys):
            _raise_if([field_error("q", "Fuzzy search needs a name (family, given or q).", "required")])
        offset = int(_decode_cursor(cursor)[0]) if cursor else 0
        any_key = token_keys[0] if len(token_keys) == 1 else None
        if len(token_keys) >= 2 and not (family_key or given_key):
            # "Smith, John" names the family first; "John Smith" the given name first.
            family_first = "," in (query.q or "")
            family_key = token_keys[0] if family_first else token_keys[-1]
            given_key = token_keys[-1] if family_first else token_keys[0]
        rows = await repository.fuzzy_search(
            session,
            family_key=family_key or None,
            given_key=given_key or None,
            any_key=any_key,
            limit=limit + 1,
            offset=offset,
        )
        results = [summary(r, r.score) for r in rows[:limit]]
        if len(rows) > limit:
            next_cursor = _encode_cursor([offset + limit])
    else:
        criteria.family_key = family_key or None
        criteria.given_key = given_key or None
        criteria.any_name_keys = tuple(token_keys)
        after = None
        if cursor:
            value = _decode_cursor(cursor)
            try:
                after = (str(value[0]), str(value[1]), uuid.UUID(str(value[2])))
            except (IndexError, ValueError):
                _raise_if([field_error("cursor", "Not a cursor this API returned.", "invalid_cursor")])
        rows = await repository.search(session, criteria, limit=limit + 1, after=after)
        results = [summary(r) for r in rows[:limit]]
        if len(rows) > limit:
            last = rows[limit - 1]
            keys = (
                [last.given_name_key, last.family_name_key]
                if repository.given_first(criteria)
                else [last.family_name_key, last.given_name_key]
            )
            next_cursor = _encode_cursor([*keys, str(last.id)])
    await record_phi_access(
        session=session,
        actor=actor,
        action="search",
        resource_type=RESOURCE,
        accesses=[(r.id, str(r.id)) for r in results],
    )
    return results, next_cursor


# ---------------------------------------------------------------------------------------------
# merge


async def merge_patients(
    *,
    session: AsyncSession,
    actor: Actor,
    patient_id: uuid.UUID,
    into_id: uuid.UUID,
    expected_version: int | None = None,
) -> MergeOutcome:
    """Merge ``patient_id`` into ``into_id``: every registered MERGE_HOOK moves its rows, the merged
    record becomes inactive and points at the survivor. Logged (``merge``) for both patients."""
    if patient_id == into_id:
        raise ValidationFailed(
            errors=[field_error("into", "A patient cannot be merged into itself.", "same_patient")]
        )
    locked = await repository.lock_pair(session, patient_id, into_id)
    merged, survivor = locked.get(patient_id), locked.get(into_id)
    if merged is None or merged.deleted_at is not None:
        raise NotFound("No patient with this id.", code="patient_not_found")
    if survivor is None or survivor.deleted_at is not None:
        raise ValidationFailed(errors=[field_error("into", "No such patient.", "unknown_patient")])
    if merged.merged_into_id is not None:
        raise PatientMergedError(f"This patient was already merged into {merged.merged_into_id}.")
    if survivor.merged_into_id is not None:
        raise ValidationFailed(
            errors=[
                field_error(
                    "into", f"That patient was merged into {survivor.merged_into_id}.", "patient_merged"
                )
            ]
        )
    check_version(merged.version, expected_version)
    moved: dict[str, int] = {}
    for hook in MERGE_HOOKS:
        moved[hook_name(hook)] = await hook(session, patient_id, into_id)
    moved["hims.patients.earlier_merges"] = await repository.repoint_merged_chain(
        session, patient_id, into_id
    )
    merged.merged_into_id = into_id
    merged.active = False
    await session.flush()
    await session.refresh(merged)
    await record_phi_access(
        session=session,
        actor=actor,
        action="merge",
        resource_type=RESOURCE,
        accesses=[(patient_id, str(patient_id)), (into_id, str(into_id))],
    )
    log.info("patients_merged", merged_id=str(patient_id), survivor_id=str(into_id), moved=moved)
    return MergeOutcome(merged=merged, survivor=survivor, moved=moved)
