"""Demo appointments for the seeded practitioners (idempotent: none are added once some exist)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import driver_connection
from hims.core.security import Actor
from hims.patients import service as patients
from hims.scheduling import repository, service
from hims.seed import SeedReport
from hims.settings import Settings

PER_DAY = 6
DAYS = 4


async def seed_appointments(session: AsyncSession, settings: Settings, report: SeedReport) -> None:
    """Book a few days of half-hour visits from tomorrow with the demo physician and paediatrician,
    for living demo patients only, once (nothing is added while they have appointments)."""
    actor = Actor.system("seed")
    conn = await driver_connection(session)
    doctors = [
        report.demo_practitioners[key]
        for key in ("practitioner-physician", "practitioner-paediatrician")
        if key in report.demo_practitioners
    ]
    if not doctors or await repository.count_of_practitioners(conn, [d["id"] for d in doctors]):
        report.created["appointments"] = 0
        return
    rows = await patients.load(conn, report.demo_patients)
    living = [
        p
        for p in report.demo_patients
        if p in rows and not rows[p]["deceased"] and rows[p]["deleted_at"] is None
    ][: PER_DAY * DAYS * len(doctors)]
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    news = []
    for index, patient_id in enumerate(living):
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
