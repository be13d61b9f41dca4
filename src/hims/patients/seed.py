"""Demo patients: the 28 Synthea sample patients plus deterministic fake variants up to 300."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import driver_connection
from hims.core.security import Actor
from hims.patients import service
from hims.patients.models import Patient
from hims.patients.schemas import PatientCreate
from hims.seed import SeedReport
from hims.settings import Settings

SEED_SYSTEM = "urn:arocord:hims:seed"
SYNTHEA_SYSTEM = "https://github.com/synthetichealth/synthea"
TOTAL = 300
#: Extra names so the demo exercises accents and non-English names in search.
EXTRA_GIVEN = ("José", "Zoë", "Siobhán", "Chidinma", "Oluwaseun", "Mei", "Ngozi", "Björn", "Aarav", "Fatima")
EXTRA_FAMILY = ("Núñez", "Okafor", "Müller", "O'Brien", "Nguyen", "Adeyemi", "García", "Kowalski", "Haddad")
LANGUAGES = ("en", "en-US", "es", "fr", "pt-BR", "yo", "zh")


def synthea_patients() -> list[dict[str, Any]]:
    """The demographics copied from the Synthea sample bundles (see data/README.md)."""
    text = resources.files("hims.patients").joinpath("data/synthea_patients.json").read_text(encoding="utf-8")
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


def demo_patients() -> list[tuple[str, PatientCreate]]:
    """(seed id, patient) for every demo patient, always the same list."""
    source = synthea_patients()
    out: list[tuple[str, PatientCreate]] = []
    for row in source:
        identifiers = [{"type": "other", "system": SYNTHEA_SYSTEM, "value": row["synthea_id"]}]
        if row.get("ssn"):
            identifiers.append(
                {"type": "national_id", "system": "http://hl7.org/fhir/sid/us-ssn", "value": row["ssn"]}
            )
        identifiers.append({"type": "other", "system": SEED_SYSTEM, "value": f"synthea-{row['synthea_id']}"})
        out.append(
            (
                f"synthea-{row['synthea_id']}",
                PatientCreate.model_validate(
                    {
                        "given_name": row["given_name"],
                        "middle_name": row.get("middle_name"),
                        "family_name": row["family_name"],
                        "date_of_birth": row["date_of_birth"],
                        "sex_at_birth": row["sex_at_birth"],
                        "phone": row.get("phone"),
                        "address_line": row.get("address_line"),
                        "city": row.get("city"),
                        "state": row.get("state"),
                        "postal_code": row.get("postal_code"),
                        "country": row.get("country"),
                        "preferred_language": row.get("preferred_language"),
                        "identifiers": identifiers,
                        "deceased": bool(row.get("deceased_at")),
                        "deceased_at": row.get("deceased_at"),
                    }
                ),
            )
        )
    givens = sorted({r["given_name"] for r in source}) + list(EXTRA_GIVEN)
    families = sorted({r["family_name"] for r in source}) + list(EXTRA_FAMILY)
    for i in range(TOTAL - len(out)):
        given = givens[(i * 7) % len(givens)]
        family = families[(i * 11 + i // len(families)) % len(families)]
        birth = date(1935, 1, 1) + timedelta(days=(i * 977) % 32000)
        key = f"variant-{i:04d}"
        ascii_name = "".join(
            c for c in f"{given}.{family}".lower() if c.isascii() and (c.isalnum() or c == ".")
        )
        out.append(
            (
                key,
                PatientCreate(
                    given_name=given,
                    family_name=family,
                    date_of_birth=birth,
                    sex_at_birth=("female", "male")[i % 2],
                    phone=f"+1 555 01{i % 100:02d}",
                    email=f"{ascii_name}.{i}@example.org",
                    city=("Springfield", "Lagos", "Leeds", "Porto Alegre")[i % 4],
                    country=("US", "NG", "GB", "BR")[i % 4],
                    preferred_language=LANGUAGES[i % len(LANGUAGES)],
                    identifiers=[{"type": "other", "system": SEED_SYSTEM, "value": key}],
                ),
            )
        )
    return out


async def existing_seed_ids(session: AsyncSession) -> dict[str, uuid.UUID]:
    """Seed id → patient id of the demo patients already in the database."""
    rows = await session.execute(
        select(Patient.id, Patient.identifiers).where(Patient.identifiers.contains([{"system": SEED_SYSTEM}]))
    )
    return {
        i["value"]: patient_id
        for patient_id, identifiers in rows
        for i in identifiers
        if i.get("system") == SEED_SYSTEM
    }


async def seed_patients(session: AsyncSession, settings: Settings, report: SeedReport) -> None:
    """Create the demo patients that are missing (through the service: MRNs, PHI log)."""
    actor = Actor.system("seed")
    have = await existing_seed_ids(session)
    created = 0
    for key, data in demo_patients():
        if key in have:
            report.demo_patients.append(have[key])
            continue
        values = data.model_dump(exclude={"allow_duplicate"})
        values["identifiers"] = [i.model_dump() for i in data.identifiers]
        row = await service.register(
            conn=await driver_connection(session), actor=actor, values=values, check_duplicates=False
        )
        report.demo_patients.append(row["id"])
        created += 1
    report.created["patients"] = created
