"""All SQL of the consultations domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from hims.consultations.models import Consultation, ConsultationAmendment, ConsultationKey
from hims.patients.models import Patient


class MissingPartition(Exception):
    """The row's year has no partition (an operator must run `hims db partitions ensure`)."""


def _is_missing_partition(exc: DBAPIError) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code == "23514" and "no partition" in str(orig)


async def patient_is_active(session: AsyncSession, patient_id: uuid.UUID) -> bool:
    """True when the patient exists and is not deleted.

    Reads the patients table directly until the patients service is merged (parallel branch).
    """
    row = await session.execute(
        select(Patient.id).where(Patient.id == patient_id, Patient.deleted_at.is_(None))
    )
    return row.first() is not None


async def add(session: AsyncSession, consultation: Consultation) -> None:
    """Insert; raises MissingPartition when no partition covers ``started_at``."""
    session.add(consultation)
    try:
        await session.flush()
    except DBAPIError as exc:
        if _is_missing_partition(exc):
            raise MissingPartition(str(consultation.started_at.year)) from exc
        raise


def _by_id(consultation_id: uuid.UUID) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """WHERE conditions for one consultation by id, narrowed to its partition (`ConsultationKey`:
    PostgreSQL prunes the others when the statement starts instead of probing each)."""
    started_at = select(ConsultationKey.started_at).where(ConsultationKey.id == consultation_id)
    return Consultation.id == consultation_id, Consultation.started_at == started_at.scalar_subquery()


async def get(
    session: AsyncSession, consultation_id: uuid.UUID, *, lock: bool = False
) -> Consultation | None:
    """One consultation by id (any partition)."""
    query = select(Consultation).where(*_by_id(consultation_id))
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def amendments(session: AsyncSession, consultation: Consultation) -> Sequence[ConsultationAmendment]:
    """Amendments of a consultation, oldest first."""
    result = await session.execute(
        select(ConsultationAmendment)
        .where(
            ConsultationAmendment.consultation_id == consultation.id,
            ConsultationAmendment.consultation_started_at == consultation.started_at,
        )
        .order_by(ConsultationAmendment.created_at)
    )
    return result.scalars().all()


async def add_amendment(session: AsyncSession, amendment: ConsultationAmendment) -> None:
    """Insert an amendment."""
    session.add(amendment)
    await session.flush()


async def list_for_patient(
    session: AsyncSession, patient_id: uuid.UUID, *, limit: int, offset: int = 0
) -> Sequence[Consultation]:
    """A patient's consultations, newest first."""
    result = await session.execute(
        select(Consultation)
        .where(Consultation.patient_id == patient_id)
        .order_by(Consultation.started_at.desc())
        .limit(limit)
        .offset(offset)
    )
    return result.scalars().all()


async def repoint_patient(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Move every consultation and amendment of ``from_id`` to ``into_id``; rows moved."""
    moved = 0
    for model in (Consultation, ConsultationAmendment):
        result = await session.execute(
            update(model).where(model.patient_id == from_id).values(patient_id=into_id)
        )
        moved += int(result.rowcount)  # type: ignore[attr-defined]
    return moved


async def belongs_to_patient(
    session: AsyncSession, consultation_id: uuid.UUID, patient_id: uuid.UUID
) -> bool:
    """True when the consultation exists and is the patient's."""
    row = await session.execute(
        select(Consultation.id).where(*_by_id(consultation_id), Consultation.patient_id == patient_id)
    )
    return row.first() is not None


async def patients_without_consultations(session: AsyncSession, *, limit: int) -> Sequence[uuid.UUID]:
    """Active patients that have no consultation yet (oldest registrations first)."""
    has_any = select(Consultation.id).where(Consultation.patient_id == Patient.id).exists()
    result = await session.execute(
        select(Patient.id)
        .where(Patient.deleted_at.is_(None), Patient.merged_into_id.is_(None), ~has_any)
        .order_by(Patient.created_at, Patient.id)
        .limit(limit)
    )
    return result.scalars().all()


async def started_for_appointment(session: AsyncSession, appointment_id: uuid.UUID) -> uuid.UUID | None:
    """The consultation already started from this appointment, if any."""
    result = await session.execute(
        select(Consultation.id).where(Consultation.appointment_id == appointment_id).limit(1)
    )
    return result.scalar_one_or_none()
