"""All SQL of appointments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from hims.scheduling.models import Appointment


async def get(
    session: AsyncSession, appointment_id: uuid.UUID, *, for_update: bool = False
) -> Appointment | None:
    """One appointment."""
    stmt = select(Appointment).where(Appointment.id == appointment_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_appointments(
    session: AsyncSession,
    *,
    starts_from: datetime | None,
    starts_before: datetime | None,
    practitioner_id: uuid.UUID | None,
    patient_id: uuid.UUID | None,
    statuses: list[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Appointment]:
    """Appointments in start order, filtered; keyset paging on (starts_at, id)."""
    stmt: Any = select(Appointment)
    if starts_from is not None:
        stmt = stmt.where(Appointment.starts_at >= starts_from)
    if starts_before is not None:
        stmt = stmt.where(Appointment.starts_at < starts_before)
    if practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    if patient_id is not None:
        stmt = stmt.where(Appointment.patient_id == patient_id)
    if statuses:
        stmt = stmt.where(Appointment.status.in_(statuses))
    if after is not None:
        stmt = stmt.where(tuple_(Appointment.starts_at, Appointment.id) > tuple_(*after))
    stmt = stmt.order_by(Appointment.starts_at, Appointment.id).limit(limit)
    return list((await session.execute(stmt)).scalars())
