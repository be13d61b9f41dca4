"""Moves a merged patient's appointments to the surviving patient."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from hims.fhir.projection import note_patient_rows
from hims.patients.merge import register_merge_hook
from hims.scheduling.models import Appointment


async def move_appointments(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Re-point every appointment of ``from_id`` to ``into_id``; returns how many moved.

    The statement bypasses the ORM, so the moved appointments' FHIR versions are noted here.
    """
    note_patient_rows(session, into_id)
    result = await session.execute(
        update(Appointment)
        .where(Appointment.patient_id == from_id)
        .values(patient_id=into_id, version=Appointment.version + 1)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


register_merge_hook(move_appointments)
