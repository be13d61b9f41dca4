"""All SQL of the clinical records domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from hims.clinical.models import (
    Allergy,
    AllergyOverride,
    Condition,
    LabOrder,
    Observation,
    Prescription,
)
from hims.core.db import Base
from hims.patients.models import Patient

M = TypeVar("M", bound=Base)

#: Problem-list statuses that count as current.
ACTIVE_PROBLEM_STATUSES = ("active", "recurrence", "relapse")


async def patient(session: AsyncSession, patient_id: uuid.UUID) -> Patient | None:
    """The (not deleted) patient row.

    Read directly until the patients service is merged (parallel branch); demographics only.
    """
    result = await session.execute(
        select(Patient).where(Patient.id == patient_id, Patient.deleted_at.is_(None))
    )
    return result.scalar_one_or_none()


async def patient_is_active(session: AsyncSession, patient_id: uuid.UUID) -> bool:
    """True when the patient exists and is not deleted."""
    result = await session.execute(
        select(Patient.id).where(Patient.id == patient_id, Patient.deleted_at.is_(None))
    )
    return result.first() is not None


async def add_all(session: AsyncSession, rows: Sequence[Base]) -> None:
    """Insert rows and flush."""
    session.add_all(rows)
    await session.flush()


async def get_for_patient(
    session: AsyncSession, model: type[M], patient_id: uuid.UUID, record_id: uuid.UUID, *, lock: bool = False
) -> M | None:
    """One record of ``model`` that belongs to the patient."""
    query = select(model).where(
        model.id == record_id,  # type: ignore[attr-defined]
        model.patient_id == patient_id,  # type: ignore[attr-defined]
    )
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_for_patient(
    session: AsyncSession,
    model: type[M],
    patient_id: uuid.UUID,
    *,
    order_by: Any,
    limit: int,
    offset: int = 0,
    where: Sequence[Any] = (),
) -> Sequence[M]:
    """A patient's records of ``model``."""
    query = (
        select(model)
        .where(model.patient_id == patient_id, *where)  # type: ignore[attr-defined]
        .order_by(order_by)
        .limit(limit)
        .offset(offset)
    )
    return (await session.execute(query)).scalars().all()


async def active_allergies(session: AsyncSession, patient_id: uuid.UUID) -> Sequence[Allergy]:
    """The patient's active allergies."""
    result = await session.execute(
        select(Allergy)
        .where(Allergy.patient_id == patient_id, Allergy.status == "active")
        .order_by(Allergy.created_at)
    )
    return result.scalars().all()


async def overrides_for(
    session: AsyncSession, prescription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[AllergyOverride]]:
    """Allergy overrides of several prescriptions in one query."""
    grouped: dict[uuid.UUID, list[AllergyOverride]] = {pid: [] for pid in prescription_ids}
    if not prescription_ids:
        return grouped
    result = await session.execute(
        select(AllergyOverride)
        .where(AllergyOverride.prescription_id.in_(prescription_ids))
        .order_by(AllergyOverride.overridden_at)
    )
    for row in result.scalars():
        grouped[row.prescription_id].append(row)
    return grouped


async def observations(
    session: AsyncSession, patient_id: uuid.UUID, *, code: str | None, limit: int, offset: int
) -> Sequence[Observation]:
    """A patient's observations, newest first, optionally of one code."""
    query = select(Observation).where(Observation.patient_id == patient_id)
    if code:
        query = query.where(Observation.code == code)
    query = query.order_by(Observation.effective_at.desc(), Observation.code).limit(limit).offset(offset)
    return (await session.execute(query)).scalars().all()


async def latest_vitals(session: AsyncSession, patient_id: uuid.UUID) -> Sequence[Observation]:
    """The latest observation of each code (one query, DISTINCT ON)."""
    result = await session.execute(
        select(Observation)
        .where(Observation.patient_id == patient_id)
        .ext(distinct_on(Observation.code))
        .order_by(Observation.code, Observation.effective_at.desc())
    )
    return result.scalars().all()


async def active_problems(session: AsyncSession, patient_id: uuid.UUID) -> Sequence[Condition]:
    """Current problem-list entries."""
    result = await session.execute(
        select(Condition)
        .where(Condition.patient_id == patient_id, Condition.clinical_status.in_(ACTIVE_PROBLEM_STATUSES))
        .order_by(Condition.onset_date.desc().nulls_last(), Condition.created_at.desc())
    )
    return result.scalars().all()


async def active_prescriptions(session: AsyncSession, patient_id: uuid.UUID) -> Sequence[Prescription]:
    """Prescriptions with status active."""
    result = await session.execute(
        select(Prescription)
        .where(Prescription.patient_id == patient_id, Prescription.status == "active")
        .order_by(Prescription.prescribed_at.desc())
    )
    return result.scalars().all()


async def repoint_patient(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Move every clinical record of ``from_id`` to ``into_id``; rows moved."""
    moved = 0
    for model in (Observation, Condition, Allergy, Prescription, AllergyOverride, LabOrder):
        result = await session.execute(
            update(model).where(model.patient_id == from_id).values(patient_id=into_id)
        )
        moved += int(result.rowcount)  # type: ignore[attr-defined]
    return moved
