"""Demo appointments for the seeded practitioners (idempotent: none are added once some exist)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import driver_connection
from hims.core.security import Actor
from hims.patients.models import Patient
from hims.patients.seed import SEED_SYSTEM
from hims.practitioners.seed import seed_practitioner_by_key
from hims.scheduling import repository, service
from hims.seed import SEEDERS, SeedReport
from hims.settings import Settings

PER_DAY = 6
DAYS = 4


async def seed_appointments(session: AsyncSession, settings: Settings, report: SeedReport) -> None:
    """Book a few days of half-hour visits from tomorrow for the demo physician and paediatrician."""
    actor = Actor.system("seed")
    conn = await driver_connection(session)
    doctors = [
        p
        for p in [
            await seed_practitioner_by_key(conn, "practitioner-physician"),
            await seed_practitioner_by_key(conn, "practitioner-paediatrician"),
        ]
        if p is not None
    ]
    if not doctors or await repository.count_of_practitioners(conn, [d["id"] for d in doctors]):
        report.created["appointments"] = 0
        return
    patients = list(
        (
            await session.execute(
                select(Patient.id)
                .where(
                    Patient.identifiers.contains([{"system": SEED_SYSTEM}]),
                    Patient.deceased.is_(False),
                    Patient.deleted_at.is_(None),
                    Patient.merged_into_id.is_(None),
                )
                .order_by(Patient.mrn)
                .limit(PER_DAY * DAYS * len(doctors))
            )
        ).scalars()
    )
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    news = []
    for index, patient_id in enumerate(patients):
        doctor = doctors[index % len(doctors)]
        slot = index // len(doctors)
        day = tomorrow + timedelta(days=slot // PER_DAY)
        starts = datetime.combine(day, time(9, 0), tzinfo=UTC) + timedelta(minutes=30 * (slot % PER_DAY))
        values = {
            "patient_id": patient_id,
            "practitioner_id": doctor["id"],
            "facility_id": doctor["facility_id"],
            "department_id": doctor["department_id"],
            "starts_at": starts,
            "ends_at": starts + timedelta(minutes=25),
            "type": "telemedicine" if index % 5 == 0 else "in_person",
            "reason": ("Annual check-up", "Follow-up", "Blood pressure review", "Vaccination")[index % 4],
        }
        news.append(service.New(values))
    booked = await service.book(conn=conn, actor=actor, news=news) if news else []
    report.created["appointments"] = len(booked)


SEEDERS.append(("appointments", seed_appointments))
