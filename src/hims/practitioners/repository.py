"""All SQL of facilities, departments and practitioners."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hims.practitioners.models import Department, Facility, Practitioner

T = TypeVar("T", Facility, Department, Practitioner)


async def get(session: AsyncSession, model: type[T], row_id: uuid.UUID) -> T | None:
    """One row by id."""
    return await session.get(model, row_id)


async def facility_by_code(session: AsyncSession, code: str) -> Facility | None:
    """A facility by its unique code."""
    return (await session.execute(select(Facility).where(Facility.code == code))).scalar_one_or_none()


async def department_by_code(session: AsyncSession, facility_id: uuid.UUID, code: str) -> Department | None:
    """A department by (facility, code)."""
    stmt = select(Department).where(Department.facility_id == facility_id, Department.code == code)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_facilities(
    session: AsyncSession, *, active: bool | None, limit: int, offset: int
) -> list[Facility]:
    """Facilities by name."""
    stmt = select(Facility).order_by(Facility.name, Facility.id).limit(limit).offset(offset)
    if active is not None:
        stmt = stmt.where(Facility.active.is_(active))
    return list((await session.execute(stmt)).scalars())


async def list_departments(
    session: AsyncSession, facility_id: uuid.UUID, *, active: bool | None
) -> list[Department]:
    """A facility's departments by name."""
    stmt = select(Department).where(Department.facility_id == facility_id).order_by(Department.name)
    if active is not None:
        stmt = stmt.where(Department.active.is_(active))
    return list((await session.execute(stmt)).scalars())


async def list_practitioners(
    session: AsyncSession,
    *,
    facility_id: uuid.UUID | None,
    department_id: uuid.UUID | None,
    profession: str | None,
    name: str | None,
    active: bool | None,
    limit: int,
    offset: int,
) -> list[Practitioner]:
    """Practitioners by family then given name, filtered."""
    stmt: Any = select(Practitioner)
    if facility_id:
        stmt = stmt.where(Practitioner.facility_id == facility_id)
    if department_id:
        stmt = stmt.where(Practitioner.department_id == department_id)
    if profession:
        stmt = stmt.where(Practitioner.profession == profession)
    if name:
        pattern = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(Practitioner.family_name.ilike(pattern), Practitioner.given_name.ilike(pattern))
        )
    if active is not None:
        stmt = stmt.where(Practitioner.active.is_(active))
    stmt = (
        stmt.order_by(Practitioner.family_name, Practitioner.given_name, Practitioner.id)
        .limit(limit)
        .offset(offset)
    )
    return list((await session.execute(stmt)).scalars())
