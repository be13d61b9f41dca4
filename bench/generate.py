"""A realistic synthetic clinical dataset for benchmarks, loaded fast with COPY.

    .venv/bin/python bench/generate.py --url postgresql://.../bench --patients 100000 --consultations 500000


Patients, practitioners, consultations spread over several years (partitions ensured first),
vital-sign observations, problems, allergies and prescriptions. Rows are generated in chunks
and streamed with asyncpg's binary COPY (`copy_records_to_table`); a Rich progress bar shows
each table. Synthetic data only: names are drawn from small lists, never from real people.

A bench fixture, not part of the product: it writes the domain tables directly (the rules, the
PHI log and the FHIR rendering of the application are bypassed), so its rows have no FHIR
versions. It says who it is (``hims.actor``) so the database does not log every row it copies as
a write from outside the application.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hims.consultations.partitions import ensure_partitions

out = Console()
CHUNK = 20_000

GIVEN = [
    "Ada",
    "Amara",
    "Ana",
    "André",
    "Aisha",
    "Bruno",
    "Camille",
    "Carlos",
    "Chen",
    "Chloé",
    "Daniel",
    "Dmitri",
    "Elena",
    "Emma",
    "Fatima",
    "François",
    "Grace",
    "Hana",
    "Hugo",
    "Ibrahim",
    "Inès",
    "Isabel",
    "Jakub",
    "James",
    "Jean",
    "José",
    "Julia",
    "Kofi",
    "Lars",
    "Leila",
    "Liam",
    "Lucía",
    "Mads",
    "María",
    "Mateo",
    "Mei",
    "Mohammed",
    "Nadia",
    "Noah",
    "Nora",
    "Olivia",
    "Omar",
    "Pablo",
    "Priya",
    "Rafael",
    "Rosa",
    "Sofia",
    "Søren",
    "Tomás",
    "Yuki",
    "Zoë",
    "Zainab",
]
FAMILY = [
    "Abara",
    "Adeyemi",
    "Almeida",
    "Andersen",
    "Bauer",
    "Becker",
    "Brown",
    "Castillo",
    "Chen",
    "Cohen",
    "Costa",
    "Dubois",
    "Díaz",
    "Fernández",
    "Fischer",
    "García",
    "Gómez",
    "Hansen",
    "Hoffmann",
    "Ibrahim",
    "Ivanova",
    "Jensen",
    "Johnson",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lee",
    "Lefèvre",
    "López",
    "Martin",
    "Martínez",
    "Mbeki",
    "Meyer",
    "Moreau",
    "Müller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Nowak",
    "Okafor",
    "Olsen",
    "Park",
    "Patel",
    "Pérez",
    "Petrov",
    "Richter",
    "Rodríguez",
    "Rossi",
    "Santos",
    "Schmidt",
    "Schneider",
    "Silva",
    "Singh",
    "Smith",
    "Sánchez",
    "Tanaka",
    "Thompson",
    "Wagner",
    "Wang",
    "Weber",
    "Williams",
    "Wilson",
    "Yilmaz",
    "Zhang",
    "Ødegaard",
]
CITIES = ("Lisbon", "Porto", "Madrid", "Lyon", "Berlin", "Oslo", "Accra", "Lagos", "Boston", "Toronto")
REASONS = ("cough", "fever", "back pain", "follow-up", "headache", "hypertension review", "rash", "fatigue")
ICD = (
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("M54.50", "Low back pain, unspecified"),
    ("F41.1", "Generalized anxiety disorder"),
)
DRUGS = (
    ("Lisinopril", "29046", "10"),
    ("Metformin", "6809", "500"),
    ("Atorvastatin", "83367", "20"),
    ("Salbutamol", "435", "100"),
    ("Sertraline", "36437", "50"),
    ("Amoxicillin", "723", "500"),
)
ALLERGENS = ("Penicillin", "Peanut", "Latex", "Sulfa drugs", "Ibuprofen", "Shellfish")
#: (LOINC, display, unit, mean, spread)
VITALS = (
    ("8867-4", "Heart rate", "/min", 75, 12),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 125, 15),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 80, 9),
    ("8310-5", "Body temperature", "Cel", 36.8, 0.4),
    ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 97, 1.5),
    ("9279-1", "Respiratory rate", "/min", 15, 2),
)

PATIENT_COLUMNS = [
    "id",
    "mrn",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex_at_birth",
    "phone",
    "city",
    "country",
    "identifiers",
    "deceased",
    "active",
    "version",
    "created_at",
    "updated_at",
]
PRACTITIONER_COLUMNS = [
    "id",
    "given_name",
    "family_name",
    "profession",
    "specialty",
    "identifiers",
    "active",
    "version",
    "created_at",
    "updated_at",
]
CONSULTATION_COLUMNS = [
    "id",
    "started_at",
    "patient_id",
    "practitioner_id",
    "kind",
    "status",
    "reason",
    "subjective",
    "assessment",
    "finished_at",
    "signed_at",
    "version",
    "created_at",
    "updated_at",
]
OBSERVATION_COLUMNS = [
    "id",
    "patient_id",
    "consultation_id",
    "group_id",
    "code_system",
    "code",
    "display",
    "value",
    "unit",
    "interpretation",
    "derived",
    "effective_at",
    "created_at",
    "updated_at",
]
CONDITION_COLUMNS = [
    "id",
    "patient_id",
    "code_system",
    "code",
    "display",
    "onset_date",
    "clinical_status",
    "verification_status",
    "version",
    "created_at",
    "updated_at",
]
ALLERGY_COLUMNS = [
    "id",
    "patient_id",
    "substance",
    "severity",
    "status",
    "version",
    "created_at",
    "updated_at",
]
PRESCRIPTION_COLUMNS = [
    "id",
    "patient_id",
    "drug_name",
    "rxnorm_code",
    "dose_value",
    "dose_unit",
    "route",
    "frequency",
    "status",
    "prescribed_at",
    "version",
    "created_at",
    "updated_at",
]


@dataclass
class GenerateReport:
    """Rows written per table and the time it took."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """All rows written."""
        return sum(self.rows.values())


def _chunks(total: int) -> Iterator[int]:
    done = 0
    while done < total:
        size = min(CHUNK, total - done)
        yield size
        done += size


async def _copy(
    conn: asyncpg.Connection, table: str, columns: list[str], records: list[tuple[Any, ...]]
) -> None:
    await conn.copy_records_to_table(table, records=records, columns=columns)


async def generate(
    url: str,
    *,
    patients: int,
    consultations: int,
    years: int = 5,
    observations_per_consultation: int = 2,
    seed: int = 42,
    progress: Progress | None = None,
) -> GenerateReport:
    """Generate and COPY the dataset into the database at ``url``."""
    rng = random.Random(seed)
    report = GenerateReport()
    started = time.perf_counter()
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:4].upper()
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute("SELECT set_config('hims.actor', 'system:bench-generate', false)")
    try:
        first_year = now.year - years + 1
        # Partitions first: COPY into a year without one would fail.
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        from hims.core.db import async_url

        engine = create_async_engine(async_url(url), poolclass=NullPool)
        try:
            async with engine.begin() as sa_conn:
                await ensure_partitions(sa_conn, from_year=first_year)
        finally:
            await engine.dispose()

        def task(name: str, total: int) -> Any:
            return progress.add_task(name, total=total) if progress else None

        def advance(task_id: Any, n: int) -> None:
            if progress is not None and task_id is not None:
                progress.advance(task_id, n)

        practitioner_count = max(20, patients // 500)
        practitioner_ids = [uuid.uuid4() for _ in range(practitioner_count)]
        t = task("practitioners", practitioner_count)
        await _copy(
            conn,
            "practitioners",
            PRACTITIONER_COLUMNS,
            [
                (
                    pid,
                    rng.choice(GIVEN),
                    rng.choice(FAMILY),
                    rng.choice(("physician", "nurse")),
                    rng.choice(("family medicine", "internal medicine", "pediatrics", "cardiology")),
                    "[]",
                    True,
                    1,
                    now,
                    now,
                )
                for pid in practitioner_ids
            ],
        )
        advance(t, practitioner_count)
        report.rows["practitioners"] = practitioner_count

        patient_ids: list[uuid.UUID] = []
        t = task("patients", patients)
        index = 0
        for size in _chunks(patients):
            records = []
            for _ in range(size):
                pid = uuid.uuid4()
                patient_ids.append(pid)
                index += 1
                records.append(
                    (
                        pid,
                        f"B{run}{index:09d}",
                        rng.choice(GIVEN),
                        rng.choice(FAMILY),
                        date(1930, 1, 1) + timedelta(days=rng.randrange(34000)),
                        rng.choice(("female", "male")),
                        f"+351 9{rng.randrange(10**8):08d}",
                        rng.choice(CITIES),
                        "PT",
                        "[]",
                        False,
                        True,
                        1,
                        now,
                        now,
                    )
                )
            await _copy(conn, "patients", PATIENT_COLUMNS, records)
            advance(t, size)
        report.rows["patients"] = patients

        span = (now - datetime(first_year, 1, 1, tzinfo=UTC)).total_seconds()
        t = task("consultations", consultations)
        t_obs = task("observations", consultations * observations_per_consultation)
        observation_total = 0
        for size in _chunks(consultations):
            visits: list[tuple[Any, ...]] = []
            observations: list[tuple[Any, ...]] = []
            for _ in range(size):
                cid, pid = uuid.uuid4(), rng.choice(patient_ids)
                started_at = datetime(first_year, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.random() * span)
                recent = (now - started_at).days < 2
                status = "in_progress" if recent else "signed"
                finished = None if recent else started_at + timedelta(minutes=20)
                visits.append(
                    (
                        cid,
                        started_at,
                        pid,
                        rng.choice(practitioner_ids),
                        "walk_in",
                        status,
                        rng.choice(REASONS),
                        "Patient reports symptoms for a few days.",
                        "Stable.",
                        finished,
                        finished,
                        1,
                        started_at,
                        started_at,
                    )
                )
                group = uuid.uuid4()
                for k in range(observations_per_consultation):
                    code, display, unit, mean, spread = VITALS[k % len(VITALS)]
                    value = Decimal(str(round(rng.gauss(mean, spread), 1)))
                    observations.append(
                        (
                            uuid.uuid4(),
                            pid,
                            cid,
                            group,
                            "http://loinc.org",
                            code,
                            display,
                            value,
                            unit,
                            None,
                            False,
                            started_at,
                            started_at,
                            started_at,
                        )
                    )
            await _copy(conn, "consultations", CONSULTATION_COLUMNS, visits)
            advance(t, size)
            if observations:
                await _copy(conn, "observations", OBSERVATION_COLUMNS, observations)
                observation_total += len(observations)
                advance(t_obs, len(observations))
        report.rows["consultations"] = consultations
        report.rows["observations"] = observation_total

        t = task("problems, allergies, prescriptions", patients)
        conditions, allergies, prescriptions = 0, 0, 0
        for offset in range(0, patients, CHUNK):
            cond_rows, allergy_rows, rx_rows = [], [], []
            for pid in patient_ids[offset : offset + CHUNK]:
                code, display = rng.choice(ICD)
                cond_rows.append(
                    (
                        uuid.uuid4(),
                        pid,
                        "http://hl7.org/fhir/sid/icd-10-cm",
                        code,
                        display,
                        date(2015, 1, 1) + timedelta(days=rng.randrange(3000)),
                        rng.choice(("active", "active", "resolved")),
                        "confirmed",
                        1,
                        now,
                        now,
                    )
                )
                if rng.random() < 0.3:
                    allergy_rows.append(
                        (
                            uuid.uuid4(),
                            pid,
                            rng.choice(ALLERGENS),
                            rng.choice(("mild", "moderate", "severe")),
                            "active",
                            1,
                            now,
                            now,
                        )
                    )
                drug, rxnorm, dose = rng.choice(DRUGS)
                rx_rows.append(
                    (
                        uuid.uuid4(),
                        pid,
                        drug,
                        rxnorm,
                        Decimal(dose),
                        "mg",
                        "oral",
                        "once daily",
                        rng.choice(("active", "completed")),
                        now,
                        1,
                        now,
                        now,
                    )
                )
            await _copy(conn, "conditions", CONDITION_COLUMNS, cond_rows)
            await _copy(conn, "allergies", ALLERGY_COLUMNS, allergy_rows)
            await _copy(conn, "prescriptions", PRESCRIPTION_COLUMNS, rx_rows)
            conditions, allergies, prescriptions = (
                conditions + len(cond_rows),
                allergies + len(allergy_rows),
                prescriptions + len(rx_rows),
            )
            advance(t, len(cond_rows))
        report.rows.update(conditions=conditions, allergies=allergies, prescriptions=prescriptions)
        t = task("ANALYZE", 1)
        await conn.execute("ANALYZE")
        advance(t, 1)
    finally:
        await conn.close()
    report.seconds = time.perf_counter() - started
    return report


def main() -> None:
    """Load a synthetic dataset with COPY into DATABASE_URL (adds to what is there; use a
    dedicated database, never one holding real patients)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--consultations", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=5, help="years the consultations span")
    parser.add_argument("--observations-per-consultation", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not args.url:
        parser.error("give --url or set DATABASE_URL")
    columns = (TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out) as progress:
        report = asyncio.run(
            generate(
                args.url,
                patients=args.patients,
                consultations=args.consultations,
                years=args.years,
                observations_per_consultation=args.observations_per_consultation,
                seed=args.seed,
                progress=progress,
            )
        )
    for table, count in report.rows.items():
        out.print(f"{table:>14}: {count:>10,} rows")
    out.print(
        f"generated {report.total:,} rows in {report.seconds:.1f} s "
        f"({report.total / max(report.seconds, 1e-9):,.0f} rows/s)"
    )


if __name__ == "__main__":
    main()
