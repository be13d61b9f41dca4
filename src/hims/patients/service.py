"""Patient rules: registration (MRN, duplicate detection), changes, search, soft delete, merge.

The one home of every patient rule, whichever way a patient arrives (REST, FHIR, a bundle, an
import, the seeder). Works on a driver connection; each write is one statement with its PHI log
rows and the record's views (`hims.core.records.write`), so a caller needs a transaction only to
group several writes. No HTTP, no commit.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson
import structlog

from hims.audit.service import log_part, record
from hims.core import records
from hims.core.errors import (
    Conflict,
    Gone,
    HimsError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
    field_error,
)
from hims.core.etag import check_version
from hims.core.records import Row
from hims.core.security import Actor
from hims.patients import matching, repository
from hims.patients.mrn import format_mrn, is_valid_mrn
from hims.patients.schemas import (
    DuplicateCandidate,
    PatientCreate,
    PatientSummary,
    PatientUpdate,
    check_country,
    check_email,
    check_language,
    check_phone,
    display_name,
)

log = structlog.get_logger("hims.patients")

RESOURCE = "Patient"
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
MAX_PAGE = 100
SEX_AT_BIRTH = ("female", "male", "intersex", "unknown")
#: Columns a change can never empty.
REQUIRED = ("given_name", "family_name", "date_of_birth", "sex_at_birth")
#: Columns the service manages itself; a change never sets them directly.
MANAGED = frozenset({"id", "mrn", "version", "created_at", "updated_at", "deleted_at", "merged_into_id"})


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


# ---------------------------------------------------------------------------------------------
# the rules of a patient row


def _length_errors(values: Row) -> list[dict[str, Any]]:
    errors = []
    for name, limit in repository_lengths().items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            errors.append(field_error(name, f"At most {limit} characters.", "too_long"))
    return errors


def repository_lengths() -> dict[str, int]:
    """Column → its maximum length, for the string columns of ``patients``."""
    return _LENGTHS


_LENGTHS = {
    c.name: int(c.type.length)  # type: ignore[attr-defined]
    for c in repository.TABLE.c
    if getattr(c.type, "length", None) and c.computed is None
}


def _format_errors(values: Row) -> list[dict[str, Any]]:
    errors = []
    for name, check in (
        ("email", check_email),
        ("phone", check_phone),
        ("country", check_country),
        ("preferred_language", check_language),
    ):
        try:
            check(values.get(name))
        except ValueError as exc:
            errors.append(field_error(name, str(exc), "invalid"))
    return errors


def patient_errors(values: Row, *, today: date) -> list[dict[str, Any]]:
    """Every rule a patient row must satisfy, as field errors (empty: valid)."""
    errors = [field_error(n, "This field is required.", "required") for n in REQUIRED if not values.get(n)]
    if values.get("sex_at_birth") and values["sex_at_birth"] not in SEX_AT_BIRTH:
        errors.append(field_error("sex_at_birth", f"One of {', '.join(SEX_AT_BIRTH)}.", "invalid"))
    errors += _length_errors(values) + _format_errors(values)
    born = values.get("date_of_birth")
    if isinstance(born, date):
        if born > today:
            errors.append(field_error("date_of_birth", "The date of birth is in the future.", "future_date"))
        elif born < EARLIEST_BIRTH_DATE:
            errors.append(field_error("date_of_birth", "The date of birth is before 1900.", "too_early"))
    died = values.get("deceased_at")
    if died is not None:
        if died.tzinfo is None:
            errors.append(
                field_error("deceased_at", "Give a time zone (e.g. Z or +01:00).", "naive_datetime")
            )
        elif isinstance(born, date) and died.date() < born:
            errors.append(
                field_error("deceased_at", "The time of death is before the birth date.", "before_birth")
            )
        elif died > datetime.now(UTC):
            errors.append(field_error("deceased_at", "The time of death is in the future.", "future_date"))
        if not values.get("deceased"):
            errors.append(
                field_error("deceased", "Set deceased to true when deceased_at is given.", "inconsistent")
            )
    return errors


def _raise_if(errors: list[dict[str, Any]]) -> None:
    if errors:
        raise ValidationFailed("The patient has invalid fields.", errors=errors)


def summary(row: Any, score: float | None = None) -> PatientSummary:
    """A PatientSummary from a row of the repository's summary columns."""
    return PatientSummary(
        id=row["id"],
        mrn=row["mrn"],
        display_name=display_name(row["given_name"], row["family_name"], row["middle_name"]),
        date_of_birth=row["date_of_birth"],
        sex_at_birth=row["sex_at_birth"],
        score=None if score is None else round(float(score), 3),
    )


def _log(actor: Actor, action: str) -> records.Part:
    return log_part(actor, action, RESOURCE)


# ---------------------------------------------------------------------------------------------
# create


def _person(values: Row) -> matching.Person:
    """The facts duplicate matching compares, of a registration or a stored row."""
    ids = values.get("national_id_keys")
    if ids is None:
        ids = [str(i.get("value")) for i in values.get("identifiers") or [] if i.get("type") == "national_id"]
    return matching.Person(
        given_name=values["given_name"],
        family_name=values["family_name"],
        date_of_birth=values["date_of_birth"],
        middle_name=values.get("middle_name"),
        sex_at_birth=values.get("sex_at_birth"),
        phone=values.get("phone"),
        email=values.get("email"),
        address_line=values.get("address_line"),
        postal_code=values.get("postal_code"),
        national_ids=tuple(ids),
    )


async def find_duplicates(*, conn: asyncpg.Connection, values: Row) -> list[DuplicateCandidate]:
    """Live patients that may be the same person as ``values``, best first (the caller logs the
    disclosure of those it shows).

    The repository fetches the patients sharing a blocking key; `hims.patients.matching` decides.
    """
    new = _person(values)
    born = values["date_of_birth"]
    rows = await repository.duplicate_candidate_rows(
        conn,
        birth_dates=[born, *matching.day_month_swapped(born)],
        family_name=values["family_name"],
        given_name=values["given_name"],
        mistyped_birth_dates=matching.birth_date_variants(born),
        phone_digits=matching.phone_digits(values.get("phone")) or None,
        email=values.get("email"),
        national_id_keys=_national_keys(values),
    )
    found = matching.duplicates(new, ((row, _person(dict(row))) for row in rows))
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
    return candidates


async def _assign_mrn(conn: asyncpg.Connection, asked: str | None) -> str:
    """The MRN of a new patient: ``asked`` (an MRN of ours carried over) when valid and free, else
    the next one."""
    if asked is None:
        return format_mrn(await repository.next_mrn_number(conn))
    if not is_valid_mrn(asked):
        raise ValidationFailed(
            errors=[field_error("mrn", "Not an MRN of ours (10 digits with a check digit).", "invalid_mrn")]
        )
    if await repository.mrn_taken(conn, asked):
        raise Conflict("Another patient has this MRN.", code="mrn_taken")
    return asked


async def register(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    values: Row,
    allow_duplicate: bool = False,
    check_duplicates: bool = True,
    id_: uuid.UUID | None = None,
    version: int = 1,
    extra: dict[str, Any] | None = None,
) -> Row:
    """Register a patient from column values (REST, FHIR, imports and the seeder all come here).

    Raises PossibleDuplicates (409) when candidates exist unless ``allow_duplicate``; the
    candidates disclosed are in the PHI log either way (logged in their own statement, so they
    stay logged when the caller rolls back). Creating over candidates is logged as
    ``duplicate_override`` on each candidate. ``id_`` and ``version`` let the FHIR API register a
    resource it already holds under that id.
    """
    row = dict.fromkeys(repository.COLUMNS) | {k: v for k, v in values.items() if k not in MANAGED}
    for name, default in (("identifiers", []), ("deceased", False), ("active", True)):
        if row[name] is None:
            row[name] = default
    _raise_if(patient_errors(row, today=datetime.now(UTC).date()))
    candidates: list[DuplicateCandidate] = []
    asked = values.get("mrn")
    async with records.atomic(conn):
        number = None
        if check_duplicates:
            # Two registrations of one person at the same moment must not both pass the check:
            # each holds, until it commits, a lock on every key a duplicate could be found by.
            # The MRN number comes in the same round trip (a refused registration leaves a gap,
            # as a rolled-back one does).
            number = await repository.lock_keys(conn, _registration_keys(row), next_mrn=asked is None)
            candidates = await find_duplicates(conn=conn, values=row)
        if not candidates or allow_duplicate:
            now = datetime.now(UTC)
            row.update(
                id=id_ or uuid.uuid4(),
                mrn=format_mrn(number) if number is not None else await _assign_mrn(conn, asked),
                version=version,
                created_at=now,
                updated_at=now,
                extra=extra,
            )
            also = [_log(actor, "create")]
            if candidates:
                also += [_disclosed(actor, candidates), _overridden(actor, candidates)]
                log.info(
                    "patient_created_over_duplicates", patient_id=str(row["id"]), candidates=len(candidates)
                )
            await repository.insert(conn, actor, [row], also)
            return row
    # Refused: the candidates the answer discloses are logged after the (empty) transaction, so
    # the log keeps them whatever the caller does next.
    await record(
        conn,
        actor=actor,
        action="duplicate_check",
        resource_type=RESOURCE,
        accesses=[(c.id, str(c.id)) for c in candidates],
    )
    raise PossibleDuplicates(candidates)


def _registration_keys(row: Row) -> list[str]:
    """Every key a duplicate of ``row`` could be found by (the blocking of `find_duplicates`)."""
    born: date = row["date_of_birth"]
    keys = [f"born:{d.isoformat()}" for d in (born, *matching.day_month_swapped(born))]
    keys.append(f"name:{matching.name_key(row['family_name'])}|{matching.name_key(row['given_name'])}")
    if digits := matching.phone_digits(row.get("phone")):
        keys.append(f"phone:{digits}")
    if row.get("email"):
        keys.append(f"email:{str(row['email']).lower()}")
    keys += [f"national:{k}" for k in _national_keys(row)]
    return keys


def _national_keys(values: Row) -> list[str]:
    return sorted({matching.national_id_key(v) for v in _person(values).national_ids} - {""})


def _disclosed(actor: Actor, candidates: list[DuplicateCandidate]) -> records.Part:
    """The candidates' ``duplicate_check`` rows, written with the patient registered over them."""
    return log_part(
        actor,
        "duplicate_check",
        RESOURCE,
        source="unnest({0}::uuid[]) AS c(id)",
        patient_id="c.id",
        resource_id="c.id::text",
        name="disclosed",
        source_args=[[c.id for c in candidates]],
    )


def _overridden(actor: Actor, candidates: list[DuplicateCandidate]) -> records.Part:
    """One ``duplicate_override`` row per candidate, naming the patient registered over it."""
    return log_part(
        actor,
        "duplicate_override",
        RESOURCE,
        source="w, unnest({0}::uuid[]) AS c(id)",
        patient_id="c.id",
        name="overridden",
        source_args=[[c.id for c in candidates]],
    )


async def create_patient(
    *, conn: asyncpg.Connection, actor: Actor, data: PatientCreate, allow_duplicate: bool = False
) -> Row:
    """Register a patient sent to the REST API."""
    values = data.model_dump(exclude={"allow_duplicate"})
    values["identifiers"] = [i.model_dump() for i in data.identifiers]
    values["emergency_contact"] = data.emergency_contact.model_dump() if data.emergency_contact else None
    return await register(
        conn=conn, actor=actor, values=values, allow_duplicate=allow_duplicate or data.allow_duplicate
    )


# ---------------------------------------------------------------------------------------------
# read, change, delete


def _readable(row: Row | None) -> Row:
    if row is None:
        raise NotFound("No patient with this id.", code="patient_not_found")
    if row["deleted_at"] is not None:
        raise Gone("This patient record was deleted.", code="patient_deleted")
    return row


async def get_patient(*, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID) -> Row:
    """One patient (merged ones too: the caller redirects to ``merged_into_id``); logged as
    ``read`` in the statement that reads it."""
    logged = log_part(
        actor,
        "read",
        RESOURCE,
        source="found WHERE deleted_at IS NULL",
        patient_id="found.id",
        resource_id="found.id::text",
    )
    return _readable(await repository.get_logged(conn, patient_id, logged))


async def load(
    conn: asyncpg.Connection, patient_ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Current rows of these patients (any state), for a caller about to change them."""
    return await repository.get_many(conn, patient_ids, lock=lock)


async def require_live_patients(
    *, conn: asyncpg.Connection, patient_ids: Sequence[uuid.UUID], field_name: str = "patient_id"
) -> None:
    """For other domains: every patient must exist, not be deleted or merged (422 naming ``field_name``)."""
    state = await repository.live_state(conn, patient_ids)
    for patient_id in dict.fromkeys(patient_ids):
        found = state.get(patient_id)
        if found is None or found["deleted_at"] is not None:
            raise ValidationFailed(errors=[field_error(field_name, "No such patient.", "unknown_patient")])
        if found["merged_into_id"] is not None:
            raise ValidationFailed(
                errors=[
                    field_error(
                        field_name,
                        f"This patient was merged into {found['merged_into_id']}.",
                        "patient_merged",
                    )
                ]
            )


async def require_patient_record(*, conn: asyncpg.Connection, patient_id: uuid.UUID) -> None:
    """For other domains addressing a patient in the URL: 404 / 410 / 409 ``patient_merged``."""
    found = (await repository.live_state(conn, [patient_id])).get(patient_id)
    if found is None:
        raise NotFound("No patient with this id.", code="patient_not_found")
    if found["deleted_at"] is not None:
        raise Gone("This patient record was deleted.", code="patient_deleted")
    if found["merged_into_id"] is not None:
        raise PatientMergedError(
            f"This patient was merged into {found['merged_into_id']}.",
            extra={"merged_into": str(found["merged_into_id"])},
        )


async def revise(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
    restore: bool = False,
) -> Row | None:
    """The next version of ``prior`` with ``changes`` applied (REST PATCH, FHIR PUT/PATCH).

    Returns None when another write changed the patient since ``prior`` was read (nothing
    written). A merged patient cannot change; a deleted one only when ``restore`` (a FHIR update
    after a delete brings the record back). The MRN never changes. ``extra`` replaces the stored
    unmodelled elements unless ``keep_extra`` and none are given.
    """
    if prior["merged_into_id"] is not None:
        raise PatientMergedError(
            f"This patient was merged into {prior['merged_into_id']}; update that record."
        )
    if prior["deleted_at"] is not None and not restore:
        raise Gone("This patient record was deleted.", code="patient_deleted")
    asked = changes.get("mrn")
    if asked is not None and asked != prior["mrn"]:
        raise ValidationFailed(
            errors=[field_error("mrn", "The MRN of a patient never changes.", "mrn_immutable")]
        )
    row = {**prior, **{k: v for k, v in changes.items() if k not in MANAGED}}
    _raise_if(patient_errors(row, today=datetime.now(UTC).date()))
    row.update(
        version=prior["version"] + 1,
        updated_at=datetime.now(UTC),
        deleted_at=None if restore else prior["deleted_at"],
        extra=extra if extra is not None or not keep_extra else prior["extra"],
    )
    if restore and prior["deleted_at"] is not None:
        row["active"] = changes.get("active", True)
    written = await repository.update(conn, actor, [row], [_log(actor, "update")])
    return row if written else None


async def update_patient(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    data: PatientUpdate,
    expected_version: int | None,
) -> Row:
    """Change the fields sent; 412 when ``expected_version`` is not the current one."""
    prior = _readable(await repository.get(conn, patient_id))
    if prior["merged_into_id"] is not None:
        raise PatientMergedError(
            f"This patient was merged into {prior['merged_into_id']}; update that record."
        )
    check_version(prior["version"], expected_version)
    changes = data.model_dump(exclude_unset=True)
    nulls = [f for f in (*REQUIRED, "deceased", "active") if f in changes and changes[f] is None]
    _raise_if([field_error(f, "This field cannot be empty.", "required") for f in nulls])
    if "identifiers" in changes:
        changes["identifiers"] = [i.model_dump() for i in data.identifiers or []]
    if "emergency_contact" in changes:
        changes["emergency_contact"] = data.emergency_contact.model_dump() if data.emergency_contact else None
    row = await revise(conn=conn, actor=actor, prior=prior, changes=changes)
    if row is None:
        raise PreconditionFailed("The record changed while saving; read it again.", code="version_mismatch")
    return row


async def remove(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Soft delete: the record stays (retention) but reads answer 410 and searches skip it.
    None when another write changed the patient since ``prior`` was read."""
    now = datetime.now(UTC)
    row = {**prior, "deleted_at": now, "active": False, "version": prior["version"] + 1, "updated_at": now}
    written = await repository.update(
        conn,
        actor,
        [row],
        [_log(actor, "delete")],
        columns=("deleted_at", "active", "version", "updated_at"),
        deleting=True,
    )
    return row if written else None


async def delete_patient(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, expected_version: int | None
) -> None:
    """Soft delete through the REST API (412 when ``expected_version`` is stale)."""
    prior = _readable(await repository.get(conn, patient_id))
    check_version(prior["version"], expected_version)
    if await remove(conn=conn, actor=actor, prior=prior) is None:
        raise PreconditionFailed("The record changed while deleting; read it again.", code="version_mismatch")


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
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    query: SearchQuery,
    limit: int = 20,
    cursor: str | None = None,
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
    keys = await repository.name_keys(conn, *names) if any(names) else ["", ""]
    family_key, given_key, token_keys = keys[0], keys[1], [k for k in keys[2:] if k]
    for field_name, raw, key in (("family", query.family, family_key), ("given", query.given, given_key)):
        if raw is not None and raw.strip() and not key:
            errors.append(field_error(field_name, "Give at least one letter or digit.", "empty"))
    _raise_if(errors)

    next_cursor: str | None = None
    if query.fuzzy:
        installed = await repository.installed_extensions(conn)
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
            conn,
            family_key=family_key or None,
            given_key=given_key or None,
            any_key=any_key,
            limit=limit + 1,
            offset=offset,
        )
        results = [summary(r, r["score"]) for r in rows[:limit]]
        if len(rows) > limit:
            next_cursor = _encode_cursor([offset + limit])
        await record(
            conn,
            actor=actor,
            action="search",
            resource_type=RESOURCE,
            accesses=[(r.id, str(r.id)) for r in results],
        )
        return results, next_cursor
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
    # One statement finds the page and logs one row per patient shown (not the look-ahead row).
    logged = log_part(
        actor,
        "search",
        RESOURCE,
        source=f"found WHERE n <= {limit}",
        patient_id="found.id",
        resource_id="found.id::text",
    )
    rows = await repository.search(conn, criteria, limit=limit + 1, after=after, log=logged)
    results = [summary(r) for r in rows[:limit]]
    if len(rows) > limit:
        last = rows[limit - 1]
        keys = (
            [last["given_name_key"], last["family_name_key"]]
            if repository.given_first(criteria)
            else [last["family_name_key"], last["given_name_key"]]
        )
        next_cursor = _encode_cursor([*keys, str(last["id"])])
    return results, next_cursor


# ---------------------------------------------------------------------------------------------
# merge

#: ``(conn, actor, from_id, into_id) -> rows moved``: one per domain holding rows of a patient,
#: listed by the composition root (`hims.composition`); each moves its rows in the merge's
#: transaction through its own service.
Mover = Callable[[asyncpg.Connection, Actor, uuid.UUID, uuid.UUID], Awaitable[int]]


@dataclass
class MergeOutcome:
    """The merged and surviving patients and the rows each domain moved."""

    merged: Row
    survivor: Row
    moved: dict[str, int] = field(default_factory=dict)


async def merge_patients(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    into_id: uuid.UUID,
    movers: Sequence[tuple[str, Mover]],
    expected_version: int | None = None,
) -> MergeOutcome:
    """Merge ``patient_id`` into ``into_id``: each domain in ``movers`` moves its rows, the merged
    record becomes inactive and points at the survivor. Logged (``merge``) for both patients.
    One transaction (opened here unless the caller has one)."""
    if patient_id == into_id:
        raise ValidationFailed(
            errors=[field_error("into", "A patient cannot be merged into itself.", "same_patient")]
        )
    async with records.atomic(conn):
        locked = await repository.get_many(conn, [patient_id, into_id], lock=True)
        merged, survivor = locked.get(patient_id), locked.get(into_id)
        if merged is None or merged["deleted_at"] is not None:
            raise NotFound("No patient with this id.", code="patient_not_found")
        if survivor is None or survivor["deleted_at"] is not None:
            raise ValidationFailed(errors=[field_error("into", "No such patient.", "unknown_patient")])
        if merged["merged_into_id"] is not None:
            raise PatientMergedError(f"This patient was already merged into {merged['merged_into_id']}.")
        if survivor["merged_into_id"] is not None:
            raise ValidationFailed(
                errors=[
                    field_error(
                        "into",
                        f"That patient was merged into {survivor['merged_into_id']}.",
                        "patient_merged",
                    )
                ]
            )
        check_version(merged["version"], expected_version)
        outcome = MergeOutcome(merged=merged, survivor=survivor)
        for name, mover in movers:
            outcome.moved[name] = await mover(conn, actor, patient_id, into_id)
        now = datetime.now(UTC)
        earlier = await repository.merged_into(conn, patient_id, lock=True)
        rows = [
            {**r, "merged_into_id": into_id, "version": r["version"] + 1, "updated_at": now} for r in earlier
        ]
        rows.append(
            {
                **merged,
                "merged_into_id": into_id,
                "active": False,
                "version": merged["version"] + 1,
                "updated_at": now,
            }
        )
        await repository.update(
            conn,
            actor,
            rows,
            [_log(actor, "merge")],
            columns=("merged_into_id", "active", "version", "updated_at"),
        )
        await record(
            conn, actor=actor, action="merge", resource_type=RESOURCE, accesses=[(into_id, str(into_id))]
        )
        outcome.moved["patients.earlier_merges"] = len(earlier)
        outcome.merged = rows[-1]
    log.info("patients_merged", merged_id=str(patient_id), survivor_id=str(into_id), moved=outcome.moved)
    return outcome
