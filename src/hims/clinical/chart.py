"""The chart summary: one request, a fixed number of queries whatever the patient's history."""

from __future__ import annotations

import uuid

import asyncpg

from hims.audit.service import record
from hims.clinical import service
from hims.clinical.schemas import (
    AllergyRead,
    ChartConsultation,
    ChartPatient,
    ChartRead,
    ConditionRead,
    ObservationRead,
    PrescriptionRead,
)
from hims.consultations.service import last_consultations
from hims.core.errors import NotFound
from hims.core.security import Actor
from hims.patients import service as patients
from hims.scheduling import service as scheduling
from hims.scheduling.schemas import AppointmentRead

RECENT_CONSULTATIONS = 10
UPCOMING_APPOINTMENTS = 10


async def get_chart(*, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID) -> ChartRead:
    """Demographics, active problems, allergies, active prescriptions, latest vitals, the last 10
    consultations and the next appointments; logged as one ``chart`` access of the patient."""
    patient = (await patients.load(conn, [patient_id])).get(patient_id)
    if patient is None or patient["deleted_at"] is not None:
        raise NotFound("No such patient.", code="patient_not_found")
    sections = await service.chart_records(conn, patient_id)
    consultations = await last_consultations(conn=conn, patient_id=patient_id, limit=RECENT_CONSULTATIONS)
    upcoming = await scheduling.upcoming_for_chart(
        conn=conn, patient_id=patient_id, limit=UPCOMING_APPOINTMENTS
    )
    await record(
        conn, actor=actor, action="chart", resource_type="Patient", accesses=[(patient_id, str(patient_id))]
    )
    return ChartRead(
        patient=ChartPatient.model_validate(patient),
        active_problems=[ConditionRead.model_validate(c) for c in sections["problems"]],
        allergies=[AllergyRead.model_validate(a) for a in sections["allergies"]],
        # The chart lists what is being taken; override details are on the prescription itself.
        active_prescriptions=[PrescriptionRead.model_validate(p) for p in sections["prescriptions"]],
        latest_vitals=[ObservationRead.model_validate(o) for o in sections["vitals"]],
        recent_consultations=[ChartConsultation.model_validate(c) for c in consultations],
        upcoming_appointments=[AppointmentRead.model_validate(r).model_dump(mode="json") for r in upcoming],
    )
