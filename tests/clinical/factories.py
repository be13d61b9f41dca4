"""Plain keyword-only factories inserting rows directly (the patients API is another branch's)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hims.clinical.models import Allergy, Condition, LabOrder, Observation, Prescription
from hims.consultations.models import Consultation
from hims.patients.models import Patient
from hims.practitioners.models import Practitioner
from hims.scheduling.models import Appointment

_mrn = itertools.count(1)


async def make_patient(
    session: AsyncSession, *, given_name: str = "Ada", family_name: str = "Okafor", **fields: Any
) -> Patient:
    """A patient row with every NOT NULL column filled."""
    patient = Patient(
        id=uuid.uuid4(),
        mrn=fields.pop("mrn", f"T{next(_mrn):08d}{uuid.uuid4().hex[:6]}"),
        given_name=given_name,
        family_name=family_name,
        date_of_birth=fields.pop("date_of_birth", date(1980, 5, 17)),
        sex_at_birth=fields.pop("sex_at_birth", "female"),
        identifiers=[],
        **fields,
    )
    session.add(patient)
    await session.flush()
    return patient


async def make_practitioner(
    session: AsyncSession, *, family_name: str = "House", **fields: Any
) -> Practitioner:
    """A practitioner row."""
    practitioner = Practitioner(
        id=uuid.uuid4(),
        given_name=fields.pop("given_name", "Gregory"),
        family_name=family_name,
        profession=fields.pop("profession", "physician"),
        identifiers=[],
        **fields,
    )
    session.add(practitioner)
    await session.flush()
    return practitioner


async def make_consultation(
    session: AsyncSession, *, patient_id: uuid.UUID, started_at: datetime | None = None, **fields: Any
) -> Consultation:
    """A consultation row (the year's partition must exist)."""
    consultation = Consultation(
        id=uuid.uuid4(),
        patient_id=patient_id,
        started_at=started_at or datetime.now(UTC),
        kind=fields.pop("kind", "walk_in"),
        status=fields.pop("status", "in_progress"),
        **fields,
    )
    session.add(consultation)
    await session.flush()
    return consultation


async def make_clinical_history(session: AsyncSession, *, patient_id: uuid.UUID, count: int) -> None:
    """``count`` records of every kind (problems, allergies, prescriptions, vitals, labs, visits)."""
    now = datetime.now(UTC)
    rows: list[Any] = []
    for i in range(count):
        when = now.replace(microsecond=0) - timedelta(days=i)
        rows.append(
            Consultation(
                id=uuid.uuid4(), patient_id=patient_id, started_at=when, kind="walk_in", status="signed"
            )
        )
        rows.append(
            Condition(
                id=uuid.uuid4(),
                patient_id=patient_id,
                code="E11.9",
                display="Type 2 diabetes mellitus without complications",
                clinical_status="active",
                verification_status="confirmed",
            )
        )
        rows.append(
            Allergy(
                id=uuid.uuid4(),
                patient_id=patient_id,
                substance=f"Substance {i}",
                severity="mild",
                status="active",
            )
        )
        rows.append(
            Prescription(
                id=uuid.uuid4(),
                patient_id=patient_id,
                drug_name=f"Drug {i}",
                dose_value=Decimal(5),
                dose_unit="mg",
                status="active",
                prescribed_at=when,
            )
        )
        rows.append(
            Observation(
                id=uuid.uuid4(),
                patient_id=patient_id,
                group_id=uuid.uuid4(),
                code="8867-4",
                display="Heart rate",
                value=Decimal(60 + i % 40),
                unit="/min",
                effective_at=when,
            )
        )
        rows.append(
            LabOrder(
                id=uuid.uuid4(),
                patient_id=patient_id,
                code="2345-7",
                display="Glucose",
                status="ordered",
                ordered_at=when,
            )
        )
    session.add_all(rows)
    await session.flush()
    practitioner = await make_practitioner(session)
    for i in range(count):
        await make_appointment(
            session,
            patient_id=patient_id,
            practitioner_id=practitioner.id,
            starts_at=now + timedelta(days=i + 1),
        )


async def make_appointment(
    session: AsyncSession,
    *,
    patient_id: uuid.UUID,
    practitioner_id: uuid.UUID,
    starts_at: datetime | None = None,
    status: str = "booked",
) -> Appointment:
    """An appointment row (30 minutes, in person)."""
    start = starts_at or datetime.now(UTC) + timedelta(days=1)
    appointment = Appointment(
        id=uuid.uuid4(),
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        starts_at=start,
        ends_at=start + timedelta(minutes=30),
        type="in_person",
        status=status,
    )
    session.add(appointment)
    await session.flush()
    return appointment
