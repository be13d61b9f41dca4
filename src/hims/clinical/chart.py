"""The chart summary: one request, a fixed number of queries whatever the patient's history.

Other domains add sections through `CHART_SECTIONS` (e.g. scheduling's upcoming appointments):
each is ``(name, async fn(session, patient_id) -> list)`` and must itself run a bounded number
of queries; its result appears in the chart under ``name``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit.service import record_phi_access
from hims.clinical import repository as repo
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
from hims.core.db import driver_connection
from hims.core.errors import NotFound
from hims.core.security import Actor
from hims.scheduling import service as scheduling
from hims.scheduling.schemas import AppointmentRead

ChartSection = Callable[[AsyncSession, uuid.UUID], Awaitable[list[Any]]]
RECENT_CONSULTATIONS = 10


UPCOMING_APPOINTMENTS = 10


async def upcoming_appointments(session: AsyncSession, patient_id: uuid.UUID) -> list[Any]:
    """The next live appointments (one query, through the scheduling service)."""
    rows = await scheduling.upcoming_for_chart(
        conn=await driver_connection(session), patient_id=patient_id, limit=UPCOMING_APPOINTMENTS
    )
    return [AppointmentRead.model_validate(r).model_dump(mode="json") for r in rows]


#: Extra chart sections: (name, async fn(session, patient_id) -> JSON-able list).
CHART_SECTIONS: list[tuple[str, ChartSection]] = [("upcoming_appointments", upcoming_appointments)]


def register_chart_section(name: str, section: ChartSection) -> None:
    """Add a chart section, replacing one of the same name."""
    CHART_SECTIONS[:] = [(n, s) for n, s in CHART_SECTIONS if n != name]
    CHART_SECTIONS.append((name, section))


async def get_chart(*, session: AsyncSession, actor: Actor, patient_id: uuid.UUID) -> ChartRead:
    """Demographics, active problems, allergies, active prescriptions, latest vitals, last 10
    consultations and the registered sections; logged as one Chart access."""
    patient = await repo.patient(session, patient_id)
    if patient is None:
        raise NotFound("No such patient.", code="patient_not_found")
    problems = await repo.active_problems(session, patient_id)
    allergies = await repo.active_allergies(session, patient_id)
    prescriptions = await repo.active_prescriptions(session, patient_id)
    vitals = await repo.latest_vitals(session, patient_id)
    consultations = await last_consultations(
        session=session, patient_id=patient_id, limit=RECENT_CONSULTATIONS
    )
    extra = {name: await section(session, patient_id) for name, section in CHART_SECTIONS}
    await record_phi_access(
        session=session,
        actor=actor,
        action="read",
        resource_type="Chart",
        accesses=[(patient_id, str(patient_id))],
    )
    return ChartRead(
        patient=ChartPatient.model_validate(patient),
        active_problems=[ConditionRead.model_validate(c) for c in problems],
        allergies=[AllergyRead.model_validate(a) for a in allergies],
        # The chart lists what is being taken; override details are on the prescription itself.
        active_prescriptions=[PrescriptionRead.model_validate(p) for p in prescriptions],
        latest_vitals=[ObservationRead.model_validate(o) for o in vitals],
        recent_consultations=[ChartConsultation.model_validate(c) for c in consultations],
        **extra,
    )
