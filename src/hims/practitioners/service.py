"""Facilities, departments and practitioners: register, change, retire, list (not patient data).

The one home of their rules, whichever way a record arrives (REST, FHIR, a bundle, an import, the
seeder): required fields and lengths, the facility and department codes (assigned when missing,
unique: 409 ``duplicate_code``), a department's facility, a practitioner's placement. Works on a
driver connection; each write is one statement with the record's views
(`hims.core.records.write`). No HTTP, no commit, no PHI log (none of this is patient data).

Retiring a record (REST ``DELETE``, FHIR delete) keeps the row, inactive, with ``deleted_at`` set:
the REST API still shows it, the FHIR API answers 410. Any later change brings it back (clears
``deleted_at``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import asyncpg
from pydantic import BaseModel
from sqlalchemy import Table

from hims.core import records
from hims.core.errors import Conflict, HimsError, NotFound, PreconditionFailed, ValidationFailed, field_error
from hims.core.etag import check_version
from hims.core.records import Row
from hims.core.security import Actor
from hims.practitioners import repository
from hims.practitioners.repository import DEPARTMENTS, FACILITIES, PRACTITIONERS
from hims.practitioners.schemas import (
    DepartmentCreate,
    DepartmentUpdate,
    FacilityCreate,
    FacilityUpdate,
    PractitionerCreate,
    PractitionerUpdate,
    Profession,
)

PROFESSIONS: tuple[str, ...] = get_args(Profession)
#: What a facility or department code may contain.
CODE = re.compile(r"^[A-Za-z0-9_.-]+$")
#: Columns the service manages itself; a change never sets them directly.
MANAGED = frozenset({"id", "version", "created_at", "updated_at", "deleted_at", "extra"})
#: Columns a REST change can never empty.
REQUIRED = ("name", "given_name", "family_name", "profession", "active")


@dataclass
class New:
    """A record to create: its column values and, for the FHIR API, the id, version and extra
    elements of the resource it comes from."""

    values: Row
    id: uuid.UUID | None = None
    version: int = 1
    extra: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# the rules of each row


def _string_lengths(table: Table) -> dict[str, int]:
    return {
        c.name: int(c.type.length)  # type: ignore[attr-defined]
        for c in table.c
        if isinstance(getattr(c.type, "length", None), int)
    }


_LENGTHS = {t.name: _string_lengths(t) for t in (FACILITIES, DEPARTMENTS, PRACTITIONERS)}


def _basic_errors(table: Table, row: Row, required: Sequence[str]) -> list[dict[str, Any]]:
    """Required columns and column lengths.

    Contact details are not held to the REST API's input formats (its schemas check those): other
    systems' directories arrive through FHIR as they keep them (Synthea has a hospital phone
    ``413-737-5167 Or 413-737-5167``), and nothing here dials or parses them.
    """
    errors = [field_error(n, "This field is required.", "required") for n in required if not row.get(n)]
    for name, limit in _LENGTHS[table.name].items():
        value = row.get(name)
        if isinstance(value, str) and len(value) > limit:
            errors.append(field_error(name, f"At most {limit} characters.", "too_long"))
    return errors


def _code_errors(row: Row) -> list[dict[str, Any]]:
    code = row.get("code")
    if isinstance(code, str) and code and not CODE.match(code):
        return [field_error("code", "Letters, digits, '.', '_' and '-' only.", "invalid")]
    return []


def facility_errors(row: Row) -> list[dict[str, Any]]:
    """Every rule a facility row must satisfy on its own, as field errors (empty: valid)."""
    return _basic_errors(FACILITIES, row, ("code", "name")) + _code_errors(row)


def department_errors(row: Row) -> list[dict[str, Any]]:
    """Every rule a department row must satisfy on its own (its facility is checked apart)."""
    return _basic_errors(DEPARTMENTS, row, ("code", "name", "facility_id")) + _code_errors(row)


def practitioner_errors(row: Row) -> list[dict[str, Any]]:
    """Every rule a practitioner row must satisfy on its own (its placement is checked apart)."""
    errors = _basic_errors(PRACTITIONERS, row, ("given_name", "family_name", "profession"))
    if row.get("profession") and row["profession"] not in PROFESSIONS:
        errors.append(field_error("profession", f"One of {', '.join(PROFESSIONS)}.", "invalid"))
    return errors


def _raise_if(errors: list[dict[str, Any]], what: str, rows: int, row_id: uuid.UUID) -> None:
    if errors:
        raise _naming(ValidationFailed(f"The {what} has invalid fields.", errors=errors), rows, row_id)


def _naming(error: HimsError, rows: int, row_id: uuid.UUID) -> HimsError:
    """``error`` saying which record of a batch it is about (``id``; the FHIR API names the entry)."""
    if rows > 1:
        error.extra.setdefault("id", str(row_id))
    return error


def _new_row(table: Table, new: New, now: datetime) -> Row:
    """A complete row for ``new``, as it will be inserted."""
    row: Row = dict.fromkeys(repository.COLUMNS[table.name])
    row.update({k: v for k, v in new.values.items() if k not in MANAGED and k in row})
    if "identifiers" in row and row["identifiers"] is None:
        row["identifiers"] = []
    if row["active"] is None:
        row["active"] = True
    row.update(
        id=new.id or uuid.uuid4(), version=new.version, created_at=now, updated_at=now, extra=new.extra
    )
    return row


def _next_version(
    prior: Row, changes: Row, extra: dict[str, Any] | None, keep_extra: bool, now: datetime
) -> Row:
    """``prior`` with ``changes`` applied, as its next version: brought back if it was retired."""
    row = {**prior, **{k: v for k, v in changes.items() if k not in MANAGED and k in prior}}
    if row["active"] is None:
        row["active"] = True
    row.update(
        version=prior["version"] + 1,
        updated_at=now,
        deleted_at=None,
        extra=extra if extra is not None or not keep_extra else prior["extra"],
    )
    return row


def _retired(prior: Row) -> Row:
    now = datetime.now(UTC)
    return {**prior, "active": False, "deleted_at": now, "version": prior["version"] + 1, "updated_at": now}


_RETIRING = ("active", "deleted_at", "version", "updated_at")


async def load(
    conn: asyncpg.Connection, table: str, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Current rows of ``table`` (facilities, departments or practitioners) by id, any state."""
    tables = {t.name: t for t in (FACILITIES, DEPARTMENTS, PRACTITIONERS)}
    return await repository.get_many(conn, tables[table], ids, lock=lock)


# ---------------------------------------------------------------------------------------------
# facilities


def _facility_code(facility_id: uuid.UUID) -> str:
    return f"ORG-{facility_id.hex[:12].upper()}"


def _duplicate_facility_code() -> Conflict:
    return Conflict("A facility with this code exists.", code="duplicate_code")


async def register_facilities(*, conn: asyncpg.Connection, actor: Actor, news: Sequence[New]) -> list[Row]:
    """Create facilities (all or none). One without a code gets ``ORG-`` and the start of its id;
    a code another facility holds is refused (409 ``duplicate_code``)."""
    now = datetime.now(UTC)
    rows = []
    for new in news:
        row = _new_row(FACILITIES, new, now)
        row["code"] = row["code"] or _facility_code(row["id"])
        _raise_if(facility_errors(row), "facility", len(news), row["id"])
        rows.append(row)
    if len(rows) > 1:
        # Which row of a batch holds a taken code; one row alone learns it from the unique
        # constraint its insert meets (`repository.insert`), one round trip fewer.
        holders = await repository.facility_code_holders(conn, [r["code"] for r in rows])
        for row in rows:
            if holders.setdefault(row["code"], row["id"]) != row["id"]:
                raise _naming(_duplicate_facility_code(), len(rows), row["id"])
    await repository.insert(conn, actor, FACILITIES, rows)
    return rows


async def revise_facility(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """The next version of a facility (REST PATCH, FHIR update); None when another write changed it
    since ``prior`` was read. A change naming no code keeps the code."""
    row = _next_version(prior, changes, extra, keep_extra, datetime.now(UTC))
    row["code"] = row["code"] or prior["code"]
    _raise_if(facility_errors(row), "facility", 1, row["id"])
    if row["code"] != prior["code"]:
        holder = (await repository.facility_code_holders(conn, [row["code"]])).get(row["code"])
        if holder is not None and holder != row["id"]:
            raise _duplicate_facility_code()
    written = await repository.update(conn, actor, FACILITIES, [row])
    return row if written else None


async def retire_facility(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Retire a facility (inactive, ``deleted_at`` set; kept for history); None when another write
    changed it since ``prior`` was read."""
    row = _retired(prior)
    written = await repository.update(conn, actor, FACILITIES, [row], columns=_RETIRING, deleting=True)
    return row if written else None


def _found(row: Row | None, what: str) -> Row:
    if row is None:
        raise NotFound(f"No {what} with this id.", code=f"{what}_not_found")
    return row


async def get_facility(*, conn: asyncpg.Connection, facility_id: uuid.UUID) -> Row:
    """One facility (retired ones too, inactive) or 404."""
    return _found(await repository.get(conn, FACILITIES, facility_id), "facility")


async def create_facility(*, conn: asyncpg.Connection, actor: Actor, data: FacilityCreate) -> Row:
    """A new facility sent to the REST API."""
    values = data.model_dump()
    values["identifiers"] = [i.model_dump() for i in data.identifiers]
    (row,) = await register_facilities(conn=conn, actor=actor, news=[New(values)])
    return row


def _changes(data: BaseModel) -> Row:
    """The fields a REST PATCH sent (422 when one that cannot be empty is null)."""
    changes = data.model_dump(exclude_unset=True)
    nulls = [f for f in REQUIRED if f in changes and changes[f] is None]
    if nulls:
        raise ValidationFailed(
            errors=[field_error(f, "This field cannot be empty.", "required") for f in nulls]
        )
    return changes


def _saved(row: Row | None) -> Row:
    if row is None:  # the row was locked: only a bug could make the version move
        raise PreconditionFailed("The record changed while saving; read it again.", code="version_mismatch")
    return row


async def update_facility(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    facility_id: uuid.UUID,
    data: FacilityUpdate,
    expected_version: int | None,
) -> Row:
    """Change a facility through the REST API (412 when ``expected_version`` is stale)."""
    async with records.atomic(conn):
        prior = _found(await repository.get(conn, FACILITIES, facility_id, lock=True), "facility")
        check_version(prior["version"], expected_version)
        return _saved(await revise_facility(conn=conn, actor=actor, prior=prior, changes=_changes(data)))


async def deactivate_facility(*, conn: asyncpg.Connection, actor: Actor, facility_id: uuid.UUID) -> None:
    """Retire a facility through the REST API (once retired, nothing more to do)."""
    async with records.atomic(conn):
        prior = _found(await repository.get(conn, FACILITIES, facility_id, lock=True), "facility")
        if prior["deleted_at"] is None:
            _saved(await retire_facility(conn=conn, actor=actor, prior=prior))


async def list_facilities(
    *, conn: asyncpg.Connection, active: bool | None = None, limit: int = 50, offset: int = 0
) -> list[Row]:
    """Facilities by name."""
    return await repository.list_facilities(conn, active=active, limit=limit, offset=offset)


# ---------------------------------------------------------------------------------------------
# departments


def _department_code(department_id: uuid.UUID) -> str:
    return f"LOC-{department_id.hex[:12].upper()}"


def _duplicate_department_code() -> Conflict:
    return Conflict("A department with this code exists in this facility.", code="duplicate_code")


def _unknown_facility() -> ValidationFailed:
    return ValidationFailed(errors=[field_error("facility_id", "No such facility.", "unknown_facility")])


async def register_departments(*, conn: asyncpg.Connection, actor: Actor, news: Sequence[New]) -> list[Row]:
    """Create departments (all or none). Each needs its facility (422 ``unknown_facility``); one
    without a code gets ``LOC-`` and the start of its id; a code another department of the same
    facility holds is refused (409 ``duplicate_code``)."""
    now = datetime.now(UTC)
    rows = []
    for new in news:
        row = _new_row(DEPARTMENTS, new, now)
        row["code"] = row["code"] or _department_code(row["id"])
        _raise_if(department_errors(row), "department", len(news), row["id"])
        rows.append(row)
    facilities = await repository.get_many(conn, FACILITIES, [r["facility_id"] for r in rows])
    for row in rows:
        if row["facility_id"] not in facilities:
            raise _naming(_unknown_facility(), len(rows), row["id"])
    holders = await repository.department_code_holders(conn, [(r["facility_id"], r["code"]) for r in rows])
    for row in rows:
        if holders.setdefault((row["facility_id"], row["code"]), row["id"]) != row["id"]:
            raise _naming(_duplicate_department_code(), len(rows), row["id"])
    await repository.insert(conn, actor, DEPARTMENTS, rows)
    return rows


async def revise_department(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """The next version of a department (REST PATCH, FHIR update); None when another write changed
    it since ``prior`` was read. A change naming no code keeps the code; one naming no facility is
    refused (422 ``required``)."""
    row = _next_version(prior, changes, extra, keep_extra, datetime.now(UTC))
    row["code"] = row["code"] or prior["code"]
    _raise_if(department_errors(row), "department", 1, row["id"])
    key = (row["facility_id"], row["code"])
    if key != (prior["facility_id"], prior["code"]):
        if row["facility_id"] != prior["facility_id"] and not await repository.get_many(
            conn, FACILITIES, [row["facility_id"]]
        ):
            raise _unknown_facility()
        holder = (await repository.department_code_holders(conn, [key])).get(key)
        if holder is not None and holder != row["id"]:
            raise _duplicate_department_code()
    written = await repository.update(conn, actor, DEPARTMENTS, [row])
    return row if written else None


async def retire_department(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Retire a department (inactive, ``deleted_at`` set); None when another write changed it
    since ``prior`` was read."""
    row = _retired(prior)
    written = await repository.update(conn, actor, DEPARTMENTS, [row], columns=_RETIRING, deleting=True)
    return row if written else None


def _in_facility(row: Row | None, facility_id: uuid.UUID) -> Row:
    if row is None or row["facility_id"] != facility_id:
        raise NotFound("No department with this id in this facility.", code="department_not_found")
    return row


async def get_department(
    *, conn: asyncpg.Connection, facility_id: uuid.UUID, department_id: uuid.UUID
) -> Row:
    """One department of a facility or 404."""
    return _in_facility(await repository.get(conn, DEPARTMENTS, department_id), facility_id)


async def create_department(
    *, conn: asyncpg.Connection, actor: Actor, facility_id: uuid.UUID, data: DepartmentCreate
) -> Row:
    """A new department of the facility in the URL (404 when there is no such facility)."""
    await get_facility(conn=conn, facility_id=facility_id)
    values = {**data.model_dump(), "facility_id": facility_id}
    (row,) = await register_departments(conn=conn, actor=actor, news=[New(values)])
    return row


async def update_department(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    facility_id: uuid.UUID,
    department_id: uuid.UUID,
    data: DepartmentUpdate,
    expected_version: int | None,
) -> Row:
    """Change a department through the REST API (412 when ``expected_version`` is stale)."""
    async with records.atomic(conn):
        prior = _in_facility(await repository.get(conn, DEPARTMENTS, department_id, lock=True), facility_id)
        check_version(prior["version"], expected_version)
        return _saved(await revise_department(conn=conn, actor=actor, prior=prior, changes=_changes(data)))


async def deactivate_department(
    *, conn: asyncpg.Connection, actor: Actor, facility_id: uuid.UUID, department_id: uuid.UUID
) -> None:
    """Retire a department through the REST API (once retired, nothing more to do)."""
    async with records.atomic(conn):
        prior = _in_facility(await repository.get(conn, DEPARTMENTS, department_id, lock=True), facility_id)
        if prior["deleted_at"] is None:
            _saved(await retire_department(conn=conn, actor=actor, prior=prior))


async def list_departments(
    *, conn: asyncpg.Connection, facility_id: uuid.UUID, active: bool | None = None
) -> list[Row]:
    """A facility's departments (404 when there is no such facility)."""
    await get_facility(conn=conn, facility_id=facility_id)
    return await repository.list_departments(conn, facility_id, active=active)


# ---------------------------------------------------------------------------------------------
# practitioners


def _placement_errors(row: Row, facilities: set[uuid.UUID], departments: dict[uuid.UUID, Row]) -> list[Any]:
    facility_id, department_id = row.get("facility_id"), row.get("department_id")
    if facility_id is not None and facility_id not in facilities:
        return [field_error("facility_id", "No such facility.", "unknown_facility")]
    if department_id is not None:
        department = departments.get(department_id)
        if department is None:
            return [field_error("department_id", "No such department.", "unknown_department")]
        if facility_id is not None and department["facility_id"] != facility_id:
            return [field_error("department_id", "The department is in another facility.", "wrong_facility")]
    return []


async def _check_placements(conn: asyncpg.Connection, rows: Sequence[Row]) -> None:
    """Each row's facility and department exist and agree (422 ``unknown_facility``,
    ``unknown_department``, ``wrong_facility``); one lookup per table for the whole batch."""
    facility_ids = [r["facility_id"] for r in rows if r.get("facility_id") is not None]
    department_ids = [r["department_id"] for r in rows if r.get("department_id") is not None]
    facilities = set(await repository.get_many(conn, FACILITIES, facility_ids)) if facility_ids else set()
    departments = await repository.get_many(conn, DEPARTMENTS, department_ids) if department_ids else {}
    for row in rows:
        _raise_if(_placement_errors(row, facilities, departments), "practitioner", len(rows), row["id"])


async def register_practitioners(*, conn: asyncpg.Connection, actor: Actor, news: Sequence[New]) -> list[Row]:
    """Create practitioners (all or none): names and profession required, facility and department
    must exist and agree."""
    now = datetime.now(UTC)
    rows = []
    for new in news:
        row = _new_row(PRACTITIONERS, new, now)
        _raise_if(practitioner_errors(row), "practitioner", len(news), row["id"])
        rows.append(row)
    await _check_placements(conn, rows)
    await repository.insert(conn, actor, PRACTITIONERS, rows)
    return rows


async def revise_practitioner(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """The next version of a practitioner (REST PATCH, FHIR update); None when another write changed
    it since ``prior`` was read. A new placement must exist and agree."""
    row = _next_version(prior, changes, extra, keep_extra, datetime.now(UTC))
    _raise_if(practitioner_errors(row), "practitioner", 1, row["id"])
    if (row["facility_id"], row["department_id"]) != (prior["facility_id"], prior["department_id"]):
        await _check_placements(conn, [row])
    written = await repository.update(conn, actor, PRACTITIONERS, [row])
    return row if written else None


async def retire_practitioner(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Retire a practitioner (inactive, ``deleted_at`` set; history keeps pointing at them); None
    when another write changed them since ``prior`` was read."""
    row = _retired(prior)
    written = await repository.update(conn, actor, PRACTITIONERS, [row], columns=_RETIRING, deleting=True)
    return row if written else None


async def get_practitioner(*, conn: asyncpg.Connection, practitioner_id: uuid.UUID) -> Row:
    """One practitioner (retired ones too, inactive) or 404."""
    return _found(await repository.get(conn, PRACTITIONERS, practitioner_id), "practitioner")


async def create_practitioner(*, conn: asyncpg.Connection, actor: Actor, data: PractitionerCreate) -> Row:
    """A new practitioner sent to the REST API."""
    values = data.model_dump()
    values["identifiers"] = [i.model_dump() for i in data.identifiers]
    (row,) = await register_practitioners(conn=conn, actor=actor, news=[New(values)])
    return row


async def update_practitioner(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    practitioner_id: uuid.UUID,
    data: PractitionerUpdate,
    expected_version: int | None,
) -> Row:
    """Change a practitioner through the REST API (``active=false`` makes them inactive; 412 when
    ``expected_version`` is stale)."""
    changes = _changes(data)
    if "identifiers" in changes:
        changes["identifiers"] = [i.model_dump() for i in data.identifiers or []]
    async with records.atomic(conn):
        prior = _found(await repository.get(conn, PRACTITIONERS, practitioner_id, lock=True), "practitioner")
        check_version(prior["version"], expected_version)
        return _saved(await revise_practitioner(conn=conn, actor=actor, prior=prior, changes=changes))


async def deactivate_practitioner(
    *, conn: asyncpg.Connection, actor: Actor, practitioner_id: uuid.UUID
) -> None:
    """Retire a practitioner through the REST API (once retired, nothing more to do)."""
    async with records.atomic(conn):
        prior = _found(await repository.get(conn, PRACTITIONERS, practitioner_id, lock=True), "practitioner")
        if prior["deleted_at"] is None:
            _saved(await retire_practitioner(conn=conn, actor=actor, prior=prior))


async def list_practitioners(
    *,
    conn: asyncpg.Connection,
    facility_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    profession: str | None = None,
    name: str | None = None,
    active: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Row]:
    """Practitioners filtered by place, profession, name prefix, active."""
    return await repository.list_practitioners(
        conn,
        facility_id=facility_id,
        department_id=department_id,
        profession=profession,
        name=name,
        active=active,
        limit=limit,
        offset=offset,
    )


async def find_facility(*, conn: asyncpg.Connection, code: str) -> Row | None:
    """The facility holding ``code``, any state."""
    return await repository.facility_by_code(conn, code)


async def find_practitioner(*, conn: asyncpg.Connection, system: str, value: str) -> Row | None:
    """A practitioner by one of their identifiers (``system|value``), any state."""
    return await repository.practitioner_by_identifier(conn, system, value)


# ---------------------------------------------------------------------------------------------
# for other domains


def _is_active(row: Row | None) -> bool:
    return row is not None and bool(row["active"]) and row["deleted_at"] is None


async def require_active_practitioners(
    *, conn: asyncpg.Connection, practitioner_ids: Sequence[uuid.UUID], field_name: str = "practitioner_id"
) -> dict[uuid.UUID, Row]:
    """For other domains: every practitioner must exist and be active, not retired (422 naming
    ``field_name``); their rows by id."""
    found = await repository.get_many(conn, PRACTITIONERS, practitioner_ids)
    if not all(_is_active(found.get(i)) for i in practitioner_ids):
        raise ValidationFailed(
            errors=[field_error(field_name, "No such active practitioner.", "unknown_practitioner")]
        )
    return found


async def require_active_practitioner(
    *, conn: asyncpg.Connection, practitioner_id: uuid.UUID, field_name: str = "practitioner_id"
) -> Row:
    """For other domains: the practitioner must exist and be active, not retired (422 naming
    ``field_name``); their row."""
    found = await require_active_practitioners(
        conn=conn, practitioner_ids=[practitioner_id], field_name=field_name
    )
    return found[practitioner_id]


async def existing_practitioners(*, conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """For other domains: which of ``ids`` are practitioners (in any state)."""
    return set(await repository.get_many(conn, PRACTITIONERS, ids))


async def require_places(
    *,
    conn: asyncpg.Connection,
    facility_ids: Sequence[uuid.UUID],
    department_ids: Sequence[uuid.UUID],
) -> None:
    """For other domains: these facilities and departments exist (422 ``unknown_facility`` on
    ``facility_id``, ``unknown_department`` on ``department_id``)."""
    if facility_ids and len(await repository.get_many(conn, FACILITIES, facility_ids)) < len(
        set(facility_ids)
    ):
        raise _unknown_facility()
    if department_ids and len(await repository.get_many(conn, DEPARTMENTS, department_ids)) < len(
        set(department_ids)
    ):
        raise ValidationFailed(
            errors=[field_error("department_id", "No such department.", "unknown_department")]
        )
