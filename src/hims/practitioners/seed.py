"""Demo facility, departments and one practitioner per clinical role (idempotent)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import driver_connection
from hims.core.records import Row
from hims.core.security import Actor
from hims.practitioners import service
from hims.practitioners.schemas import DepartmentCreate, FacilityCreate, Identifier, PractitionerCreate
from hims.seed import SEEDERS, SeedReport
from hims.settings import Settings

SEED_SYSTEM = "urn:arocord:hims:seed"
FACILITY_CODE = "DEMO"
DEPARTMENTS = (
    ("GEN", "General Medicine"),
    ("PED", "Paediatrics"),
    ("ER", "Emergency"),
    ("CARD", "Cardiology"),
)
#: (seed id, prefix, given, family, profession, specialty, department code)
PRACTITIONERS = (
    ("practitioner-physician", "Dr", "Amina", "Bello", "physician", "Internal medicine", "GEN"),
    ("practitioner-nurse", None, "Grace", "Mensah", "nurse", "Emergency nursing", "ER"),
    ("practitioner-paediatrician", "Dr", "Tomás", "Oyelaran", "physician", "Paediatrics", "PED"),
)


async def seed_practitioner_by_key(conn: asyncpg.Connection, key: str) -> Row | None:
    """A seeded practitioner by its seed id (e.g. ``practitioner-physician``)."""
    return await service.find_practitioner(conn=conn, system=SEED_SYSTEM, value=key)


async def seed_practitioners(session: AsyncSession, settings: Settings, report: SeedReport) -> None:
    """Create what is missing of the demo facility, its departments and practitioners."""
    actor = Actor.system("seed")
    conn = await driver_connection(session)
    created = {"facilities": 0, "departments": 0, "practitioners": 0}
    facility = await service.find_facility(conn=conn, code=FACILITY_CODE)
    if facility is None:
        facility = await service.create_facility(
            conn=conn,
            actor=actor,
            data=FacilityCreate(
                code=FACILITY_CODE,
                name="AROCORD Demo Hospital",
                phone="+1 555 0100",
                address_line="1 Demo Way",
                city="Springfield",
                state="Massachusetts",
                postal_code="01101",
                country="US",
            ),
        )
        created["facilities"] += 1
    existing = {d["code"]: d for d in await service.list_departments(conn=conn, facility_id=facility["id"])}
    departments = {}
    for code, name in DEPARTMENTS:
        department = existing.get(code)
        if department is None:
            department = await service.create_department(
                conn=conn,
                actor=actor,
                facility_id=facility["id"],
                data=DepartmentCreate(code=code, name=name),
            )
            created["departments"] += 1
        departments[code] = department
    for key, prefix, given, family, profession, specialty, department_code in PRACTITIONERS:
        if await seed_practitioner_by_key(conn, key) is not None:
            continue
        await service.create_practitioner(
            conn=conn,
            actor=actor,
            data=PractitionerCreate(
                prefix=prefix,
                given_name=given,
                family_name=family,
                profession=profession,
                specialty=specialty,
                facility_id=facility["id"],
                department_id=departments[department_code]["id"],
                email=f"{given.lower()}.{family.lower()}@example.org".replace("á", "a"),
                identifiers=[Identifier(system=SEED_SYSTEM, value=key)],
            ),
        )
        created["practitioners"] += 1
    report.created.update(created)


SEEDERS.append(("practitioners", seed_practitioners))
