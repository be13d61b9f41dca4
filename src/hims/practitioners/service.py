"""Facilities, departments and practitioners: create, change, deactivate, list (not PHI)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.errors import Conflict, NotFound, ValidationFailed, field_error
from hims.core.etag import check_version
from hims.core.security import Actor
from hims.practitioners import repository
from hims.practitioners.models import Department, Facility, Practitioner
from hims.practitioners.schemas import (
    DepartmentCreate,
    DepartmentUpdate,
    FacilityCreate,
    FacilityUpdate,
    PractitionerCreate,
    PractitionerUpdate,
)

REQUIRED = ("name", "given_name", "family_name", "profession", "active")


def _apply(row: Any, data: BaseModel, expected_version: int | None) -> None:
    check_version(row.version, expected_version)
    changes = data.model_dump(exclude_unset=True)
    nulls = [f for f in REQUIRED if f in changes and changes[f] is None]
    if nulls:
        raise ValidationFailed(
            errors=[field_error(f, "This field cannot be empty.", "required") for f in nulls]
        )
    for name, value in changes.items():
        setattr(row, name, value)


async def get_facility(*, session: AsyncSession, facility_id: uuid.UUID) -> Facility:
    """One facility or 404."""
    facility = await repository.get(session, Facility, facility_id)
    if facility is None:
        raise NotFound("No facility with this id.", code="facility_not_found")
    return facility


async def create_facility(*, session: AsyncSession, actor: Actor, data: FacilityCreate) -> Facility:
    """A new facility; its code is unique (409 ``duplicate_code``)."""
    if await repository.facility_by_code(session, data.code):
        raise Conflict("A facility with this code exists.", code="duplicate_code")
    facility = Facility(id=uuid.uuid4(), active=True, **data.model_dump())
    session.add(facility)
    await session.flush()
    await session.refresh(facility)
    return facility


async def update_facility(
    *,
    session: AsyncSession,
    actor: Actor,
    facility_id: uuid.UUID,
    data: FacilityUpdate,
    expected_version: int | None,
) -> Facility:
    """Change a facility (``active=false`` retires it)."""
    facility = await get_facility(session=session, facility_id=facility_id)
    _apply(facility, data, expected_version)
    await session.flush()
    await session.refresh(facility)
    return facility


async def list_facilities(
    *, session: AsyncSession, active: bool | None = None, limit: int = 50, offset: int = 0
) -> list[Facility]:
    """Facilities by name."""
    return await repository.list_facilities(session, active=active, limit=limit, offset=offset)


async def get_department(
    *, session: AsyncSession, facility_id: uuid.UUID, department_id: uuid.UUID
) -> Department:
    """One department of a facility or 404."""
    department = await repository.get(session, Department, department_id)
    if department is None or department.facility_id != facility_id:
        raise NotFound("No department with this id in this facility.", code="department_not_found")
    return department


async def create_department(
    *, session: AsyncSession, actor: Actor, facility_id: uuid.UUID, data: DepartmentCreate
) -> Department:
    """A new department; codes are unique within a facility."""
    await get_facility(session=session, facility_id=facility_id)
    if await repository.department_by_code(session, facility_id, data.code):
        raise Conflict("A department with this code exists in this facility.", code="duplicate_code")
    department = Department(id=uuid.uuid4(), facility_id=facility_id, active=True, **data.model_dump())
    session.add(department)
    await session.flush()
    await session.refresh(department)
    return department


async def update_department(
    *,
    session: AsyncSession,
    actor: Actor,
    facility_id: uuid.UUID,
    department_id: uuid.UUID,
    data: DepartmentUpdate,
    expected_version: int | None,
) -> Department:
    """Change a department."""
    department = await get_department(session=session, facility_id=facility_id, department_id=department_id)
    _apply(department, data, expected_version)
    await session.flush()
    await session.refresh(department)
    return department


async def list_departments(
    *, session: AsyncSession, facility_id: uuid.UUID, active: bool | None = None
) -> list[Department]:
    """A facility's departments."""
    await get_facility(session=session, facility_id=facility_id)
    return await repository.list_departments(session, facility_id, active=active)


async def _check_placement(
    session: AsyncSession, facility_id: uuid.UUID | None, department_id: uuid.UUID | None
) -> None:
    if facility_id is not None and await repository.get(session, Facility, facility_id) is None:
        raise ValidationFailed(errors=[field_error("facility_id", "No such facility.", "unknown_facility")])
    if department_id is not None:
        department = await repository.get(session, Department, department_id)
        if department is None:
            raise ValidationFailed(
                errors=[field_error("department_id", "No such department.", "unknown_department")]
            )
        if facility_id is not None and department.facility_id != facility_id:
            raise ValidationFailed(
                errors=[
                    field_error("department_id", "The department is in another facility.", "wrong_facility")
                ]
            )


async def get_practitioner(*, session: AsyncSession, practitioner_id: uuid.UUID) -> Practitioner:
    """One practitioner or 404."""
    practitioner = await repository.get(session, Practitioner, practitioner_id)
    if practitioner is None:
        raise NotFound("No practitioner with this id.", code="practitioner_not_found")
    return practitioner


async def create_practitioner(
    *, session: AsyncSession, actor: Actor, data: PractitionerCreate
) -> Practitioner:
    """A new practitioner (facility and department must exist and agree)."""
    await _check_placement(session, data.facility_id, data.department_id)
    values = data.model_dump()
    values["identifiers"] = [i.model_dump() for i in data.identifiers]
    practitioner = Practitioner(id=uuid.uuid4(), active=True, **values)
    session.add(practitioner)
    await session.flush()
    await session.refresh(practitioner)
    return practitioner


async def update_practitioner(
    *,
    session: AsyncSession,
    actor: Actor,
    practitioner_id: uuid.UUID,
    data: PractitionerUpdate,
    expected_version: int | None,
) -> Practitioner:
    """Change a practitioner (``active=false`` retires them)."""
    practitioner = await get_practitioner(session=session, practitioner_id=practitioner_id)
    changes = data.model_dump(exclude_unset=True)
    await _check_placement(
        session,
        changes.get("facility_id", practitioner.facility_id),
        changes.get("department_id", practitioner.department_id),
    )
    _apply(practitioner, data, expected_version)
    if "identifiers" in changes:
        practitioner.identifiers = [i.model_dump() for i in data.identifiers or []]
    await session.flush()
    await session.refresh(practitioner)
    return practitioner


async def list_practitioners(
    *,
    session: AsyncSession,
    facility_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    profession: str | None = None,
    name: str | None = None,
    active: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Practitioner]:
    """Practitioners filtered by place, profession, name prefix, active."""
    return await repository.list_practitioners(
        session,
        facility_id=facility_id,
        department_id=department_id,
        profession=profession,
        name=name,
        active=active,
        limit=limit,
        offset=offset,
    )


async def require_active_practitioner(*, session: AsyncSession, practitioner_id: uuid.UUID) -> Practitioner:
    """For other domains: the practitioner must exist and be active (422 ``practitioner_id``)."""
    practitioner = await repository.get(session, Practitioner, practitioner_id)
    if practitioner is None or not practitioner.active:
        raise ValidationFailed(
            errors=[field_error("practitioner_id", "No such active practitioner.", "unknown_practitioner")]
        )
    return practitioner


async def existing_practitioners(*, conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these practitioners are registered."""
    rows = await conn.fetch("SELECT id FROM practitioners WHERE id = ANY($1::uuid[])", list(ids))
    return {r["id"] for r in rows}
