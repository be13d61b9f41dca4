"""Registers the consultations' patient-merge hook (imported by the package)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from hims.consultations.service import repoint_patient
from hims.fhir.projection import note_patient_rows
from hims.patients.merge import register_merge_hook


@register_merge_hook
async def move_consultations(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Move the consultations to the survivor; their Encounters follow (the UPDATE bypasses the ORM)."""
    note_patient_rows(session, into_id)
    return await repoint_patient(session, from_id, into_id)
