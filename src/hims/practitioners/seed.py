"""Demo facility, departments and one practitioner per clinical role (idempotent)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import driver_connection
from hims.core.security import Actor
from hims.practitioners import service
from hims.practitioners.schemas import DepartmentCreate, FacilityCreate, Identifier, PractitionerCreate
from hims.seed import SeedReport
from hims.settings import Settings

SEED_SYSTEM = "urn:arocord:hims:seed"
#: The facilities and departments loaded as reference data (replace the file, or pass
#: `hims db seed --reference-data-only --reference-file PATH`, for your own organisation).
REFERENCE_FILE = "data/reference.json"
#: (seed id, prefix, given, family, profession, specialty, department code) of the demo practitioners.
PRACTITIONERS = (
    ("practitioner-physician", "Dr", "Amina", "Bello", "physician", "Internal medicine", "GEN"),
    ("practitioner-nurse", None, "Grace", "Mensah", "nurse", "Emergency nursing", "ER"),
    ("practitioner-paediatrician", "Dr", "Tomás", "Oyelaran", "physician", "Paediatrics", "PED"),
)


def reference_data(path: Path | None = None) -> dict[str, Any]:
    """The facilities (with their departments) of the reference data file."""
    text = (
        path.read_text(encoding="utf-8")
        if path
        else resources.files("hims.practitioners").joinpath(REFERENCE_FILE).read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


async def seed_reference(session: AsyncSession, settings: Settings, report: SeedReport) -> None:
    """Create the facilities and departments of the reference data that do not exist yet."""
    actor = Actor.system("seed")
    conn = await driver_connection(session)
    created = {"facilities": 0, "departments": 0}
    for entry in reference_data(report.reference_file)["facilities"]:
        departments = entry.pop("departments", [])
        facility = await service.find_facility(conn=conn, code=entry["code"])
        if facility is None:
            facility = await service.create_facility(conn=conn, actor=actor, data=FacilityCreate(**entry))
            created["facilities"] += 1
        existing = {d["code"] for d in await service.list_departments(conn=conn, facility_id=facility["id"])}
        for department in departments:
            if department["code"] not in existing:
                await service.create_department(
                    conn=conn, actor=actor, facility_id=facility["id"], data=DepartmentCreate(**department)
                )
                created["departments"] += 1
    report.created.update(created)


async def seed_practitioners(session: AsyncSession, settings: Settings, report: SeedReport) -> None:
    """The demo practitioners (in the first reference facility), created when missing."""
    actor = Actor.system("seed")
    conn = await driver_connection(session)
    created = 0
    first = reference_data(report.reference_file)["facilities"][0]
    facility = await service.find_facility(conn=conn, code=first["code"])
    if facility is None:
        report.created["practitioners"] = 0
        return
    departments = {
        d["code"]: d for d in await service.list_departments(conn=conn, facility_id=facility["id"])
    }
    for key, prefix, given, family, profession, specialty, department_code in PRACTITIONERS:
        found = await service.find_practitioner(conn=conn, system=SEED_SYSTEM, value=key)
        if found is None:
            department = departments.get(department_code)
            found = await service.create_practitioner(
                conn=conn,
                actor=actor,
                data=PractitionerCreate(
                    prefix=prefix,
                    given_name=given,
                    family_name=family,
                    profession=profession,
                    specialty=specialty,
                    facility_id=facility["id"],
                    department_id=department["id"] if department else None,
                    email=f"{given.lower()}.{family.lower()}@example.org".replace("á", "a"),
                    identifiers=[Identifier(system=SEED_SYSTEM, value=key)],
                ),
            )
            created += 1
        report.demo_practitioners[key] = found
    report.created["practitioners"] = created
