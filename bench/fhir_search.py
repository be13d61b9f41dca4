"""FHIR search benchmark: the HealthSamurai search parameters over a generated data set.

Generates N patients, each with one Encounter and one Observation (3N resources, written through the
store's batch writer with search extraction), then times searches in-process (service + SQL, no HTTP)
and prints p50/p95 per parameter.

    .venv/bin/python bench/fhir_search.py --patients 100000 --queries 50
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any

from _fhir_common import cleaning_up, fresh_database, pct
from hims.core.db import Database
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir import searchset, versions

FAMILIES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Okafor",
    "Müller",
    "Nguyen",
    "Kowalski",
    "Rossi",
    "Silva",
    "Kim",
    "Ivanova",
    "Haddad",
    "Tanaka",
]
GIVEN = [
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "Adaeze",
    "Wei",
    "Aisha",
    "Carlos",
    "Yuki",
    "Olga",
    "Sven",
    "Priya",
    "Omar",
    "Lucia",
    "Kofi",
    "Ingrid",
]
CITIES = [
    "Boston",
    "Springfield",
    "Worcester",
    "Cambridge",
    "Lowell",
    "Brockton",
    "Quincy",
    "Lynn",
    "Newton",
    "Somerville",
    "Lagos",
    "Berlin",
    "Dublin",
    "Austin",
    "Denver",
    "Seattle",
    "Portland",
    "Miami",
]
CATEGORIES = ["vital-signs", "laboratory", "social-history", "survey", "exam"]


def _batch(rng: random.Random, start: int, size: int, now: datetime) -> list[repo.Write]:
    writes: list[repo.Write] = []
    for n in range(start, start + size):
        pid = f"p{n}"
        year = rng.randint(1930, 2020)
        patient = {
            "resourceType": "Patient",
            "id": pid,
            "meta": {"tag": [{"system": "urn:bench:cohort", "code": f"cohort{n % 10}"}]},
            "name": [
                {
                    "family": rng.choice(FAMILIES) + (str(n % 97) if n % 3 else ""),
                    "given": [rng.choice(GIVEN)],
                }
            ],
            "gender": rng.choice(["male", "female"]),
            "birthDate": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "address": [
                {
                    "line": [f"{rng.randint(1, 999)} Main St"],
                    "city": rng.choice(CITIES),
                    "postalCode": f"{rng.randint(10000, 99999)}",
                }
            ],
        }
        day = f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        encounter = {
            "resourceType": "Encounter",
            "id": f"e{n}",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T10:00:00Z"},
        }
        observation = {
            "resourceType": "Observation",
            "id": f"o{n}",
            "meta": {"profile": [VITALS if n % 2 else LAB]},
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": rng.choice(CATEGORIES),
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"},
            "encounter": {"reference": f"Encounter/e{n}"},
            "effectiveDateTime": f"{day}T09:30:00Z",
            "valueQuantity": {"value": rng.randint(50, 120), "unit": "/min"},
        }
        for resource in (patient, encounter, observation):
            writes.append(
                versions.prepare(
                    resource,
                    resource_type=resource["resourceType"],
                    id_=resource["id"],
                    version_id=1,
                    now=now,
                    method="PUT",
                )
            )
    return writes


VITALS = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
LAB = "http://example.org/fhir/StructureDefinition/lab-result"

QUERIES: list[tuple[str, str, Any]] = [
    ("string", "Patient", lambda r: [("name", r.choice(FAMILIES)[:3])]),
    ("string:contains", "Patient", lambda r: [("name:contains", r.choice(FAMILIES)[1:4].lower())]),
    ("string address", "Patient", lambda r: [("address", r.choice(CITIES)[:4])]),
    ("string address:contains", "Patient", lambda r: [("address:contains", r.choice(CITIES)[2:5].lower())]),
    (
        "date birthdate eq",
        "Patient",
        lambda r: [("birthdate", f"{r.randint(1930, 2020)}-0{r.randint(1, 9)}")],
    ),
    ("date birthdate lt", "Patient", lambda r: [("birthdate", f"lt{r.randint(1930, 2020)}")]),
    ("date birthdate gt", "Patient", lambda r: [("birthdate", f"gt{r.randint(1930, 2020)}")]),
    (
        "date birthdate ge/le",
        "Patient",
        lambda r: [("birthdate", f"ge{r.randint(1930, 2010)}"), ("birthdate", f"le{r.randint(2011, 2020)}")],
    ),
    (
        "date birthdate sa/eb/ap",
        "Patient",
        lambda r: [("birthdate", f"{r.choice(['sa', 'eb', 'ap'])}{r.randint(1930, 2020)}-06-15")],
    ),
    ("date Observation", "Observation", lambda r: [("date", f"20{r.randint(10, 24)}-0{r.randint(1, 9)}")]),
    ("date Encounter", "Encounter", lambda r: [("date", f"ge20{r.randint(10, 24)}-0{r.randint(1, 9)}-01")]),
    ("token category", "Observation", lambda r: [("category", r.choice(CATEGORIES))]),
    ("reference subject", "Observation", lambda r: [("subject", f"Patient/p{r.randint(0, 999)}")]),
    ("chain subject.name", "Observation", lambda r: [("subject:Patient.name", r.choice(FAMILIES))]),
    ("quantity", "Observation", lambda r: [("value-quantity", f"gt{r.randint(50, 119)}")]),
    ("token _tag", "Patient", lambda r: [("_tag", f"urn:bench:cohort|cohort{r.randint(0, 9)}")]),
    ("uri _profile", "Observation", lambda r: [("_profile", r.choice([VITALS, LAB]))]),
    ("uri _profile:below", "Observation", lambda r: [("_profile:below", "http://example.org/fhir/")]),
]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    url = await fresh_database("hims_bench_fhir_search")
    db = Database(url, pool_size=3)
    rng = random.Random(7)
    now = datetime.now(UTC)
    started = time.perf_counter()
    batch = 1000
    for start in range(0, args.patients, batch):
        writes = _batch(rng, start, min(batch, args.patients - start), now)
        async with db.transaction() as session:
            await repo.write(await repo.connection(session), writes, replace_index=False)
    elapsed = time.perf_counter() - started
    print(
        f"generated {args.patients:,} patients + encounters + observations ({3 * args.patients:,} resources) "
        f"in {elapsed:.0f} s ({3 * args.patients / elapsed:,.0f} resources/s)"
    )
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute("VACUUM ANALYZE")  # type: ignore[union-attr]
    actor = Actor.system("bench", channel="api")
    print(
        f"{'parameter':28} {'p50 ms':>8} {'p95 ms':>8}  (first page, _count=20, {args.queries} queries each)"
    )
    for label, rtype, make in QUERIES:
        lat: list[float] = []
        for _ in range(args.queries):
            params = make(rng)
            t0 = time.perf_counter()
            async with db.transaction() as session:
                await searchset.search(
                    session=session,
                    actor=actor,
                    resource_type=rtype,
                    params=params,
                    strict=True,
                    base_url="http://bench/fhir/R4",
                )
            lat.append(time.perf_counter() - t0)
        print(f"{label:28} {pct(lat, 0.5):8.1f} {pct(lat, 0.95):8.1f}")
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(cleaning_up(main()))
