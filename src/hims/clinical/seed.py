"""Demo clinical history for seeded patients (`hims db seed`), through the service functions.

Idempotent: only patients without any consultation get a history, so re-running adds nothing.
Writes go through the same services as the API, so they are validated and PHI-logged (channel
``cli``). Visits fall within the current year, whose partition always exists.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from hims.clinical import service
from hims.clinical.schemas import (
    AllergyCreate,
    ConditionCreate,
    LabOrderCreate,
    LabResultCreate,
    PrescriptionCreate,
    VitalsCreate,
)
from hims.consultations import service as consultations
from hims.consultations.schemas import ConsultationStart, SoapUpdate
from hims.core.db import driver_connection
from hims.core.security import Actor
from hims.seed import SeedReport
from hims.settings import Settings

PATIENTS = 200
PROBLEMS = (
    ("I10", "hypertension review"),
    ("E11.9", "diabetes follow-up"),
    ("J45.909", "asthma review"),
    ("E78.5", "lipids follow-up"),
    ("M54.50", "back pain"),
    ("J06.9", "sore throat and cough"),
)
DRUGS = (
    ("Lisinopril", "29046", "10"),
    ("Metformin", "6809", "500"),
    ("Atorvastatin", "83367", "20"),
    ("Sertraline", "36437", "50"),
    ("Paracetamol", "161", "500"),
)
ALLERGIES = (
    ("Peanut", "anaphylaxis", "severe"),
    ("Latex", "contact dermatitis", "mild"),
    ("Shellfish", "hives", "moderate"),
)


async def seed_clinical_history(session: AsyncSession, _settings: Settings, report: SeedReport) -> None:
    """Give up to 200 demo patients (those the patients seeder made) a few signed visits with
    vitals, problems, drugs and labs; never any other patient."""
    actor = Actor.system("seed", channel="cli")
    conn = await driver_connection(session)
    now = datetime.now(UTC)
    year_start = datetime(now.year, 1, 1, tzinfo=UTC)
    created = 0
    demo = report.demo_patients[:PATIENTS]
    for patient_id in await consultations.patients_without_consultations(conn=conn, patient_ids=demo):
        rng = random.Random(patient_id.int)  # noqa: S311 - demo data, deterministic per patient
        problem, reason = rng.choice(PROBLEMS)
        for visit in range(rng.randint(1, 3)):
            started = max(year_start, now - timedelta(days=rng.randint(2, 300), hours=visit))
            consultation = await consultations.start_consultation(
                conn=conn,
                actor=actor,
                patient_id=patient_id,
                data=ConsultationStart(started_at=started, reason=reason),
            )
            await consultations.update_note(
                conn=conn,
                actor=actor,
                consultation_id=consultation["id"],
                data=SoapUpdate(
                    subjective="Feels mostly well.",
                    objective="Examination unremarkable.",
                    assessment=reason.capitalize(),
                    plan="Continue treatment; review in 3 months.",
                ),
            )
            await consultations.sign_consultation(conn=conn, actor=actor, consultation_id=consultation["id"])
            await service.record_vitals(
                conn=conn,
                actor=actor,
                patient_id=patient_id,
                data=VitalsCreate(
                    systolic_bp=Decimal(rng.randint(105, 155)),
                    diastolic_bp=Decimal(rng.randint(65, 95)),
                    heart_rate=Decimal(rng.randint(55, 105)),
                    body_temperature=Decimal("36.8"),
                    spo2=Decimal(rng.randint(93, 99)),
                    body_weight=Decimal(rng.randint(50, 110)),
                    body_height=Decimal(rng.randint(150, 195)),
                    effective_at=started + timedelta(minutes=5),
                    consultation_id=consultation["id"],
                ),
            )
            created += 2
        await service.add_condition(
            conn=conn, actor=actor, patient_id=patient_id, data=ConditionCreate(code=problem)
        )
        if rng.random() < 0.3:
            substance, reaction, severity = rng.choice(ALLERGIES)
            await service.add_allergy(
                conn=conn,
                actor=actor,
                patient_id=patient_id,
                data=AllergyCreate(substance=substance, reaction=reaction, severity=severity),
            )
        drug, rxnorm, dose = rng.choice(DRUGS)
        await service.prescribe(
            conn=conn,
            actor=actor,
            patient_id=patient_id,
            data=PrescriptionCreate(
                drug_name=drug,
                rxnorm_code=rxnorm,
                dose_value=Decimal(dose),
                dose_unit="mg",
                route="oral",
                frequency="once daily",
                duration_days=90,
            ),
        )
        order = await service.order_lab(
            conn=conn,
            actor=actor,
            patient_id=patient_id,
            data=LabOrderCreate(code="2345-7", display="Glucose [Mass/volume] in Serum or Plasma"),
        )
        await service.result_lab(
            conn=conn,
            actor=actor,
            patient_id=patient_id,
            order_id=order["id"],
            data=LabResultCreate(
                value=Decimal(rng.randint(70, 180)),
                unit="mg/dL",
                reference_low=Decimal(70),
                reference_high=Decimal(99),
            ),
        )
        created += 3
    report.created["clinical records"] = report.created.get("clinical records", 0) + created


async def seed_code_lists(_session: AsyncSession, _settings: Settings, report: SeedReport) -> None:
    """The code lists are part of the package (nothing to store): load them and say which they are."""
    for name, size in service.code_lists().items():
        report.notes.append(f"code list {name}: {size} codes (shipped with the package)")
