"""Patient name-prefix search: service (with PHI log) vs the same SQL straight through asyncpg.

    DATABASE_URL=postgresql://... python bench/patient_search.py --patients 200000 --queries 300

Adds synthetic patients (INSERT ... SELECT generate_series, family names with a numeric suffix so
prefixes are selective like real surnames) to a migrated database, ANALYZEs, then times searches.
Prints p50/p95 in ms and the service/asyncpg ratio. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

import asyncpg
from sqlalchemy.dialects import postgresql

from hims.core.db import Database
from hims.core.security import Actor
from hims.patients import repository, service

FAMILIES = ["Núñez", "Smith", "Okafor", "Zhang", "Müller", "Brown", "Adeyemi", "García", "O'Brien", "Nguyen"]
GIVENS = ["Ana", "José", "Wei", "Amara", "John", "Zoë", "Siobhán", "Chidinma", "Mei", "Kwame"]


async def seed(url: str, patients: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        have = await conn.fetchval("SELECT count(*) FROM patients WHERE mrn LIKE 'B%'")
        if have >= patients:
            return
        started = time.perf_counter()
        await conn.execute(
            """
            INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex_at_birth, identifiers,
                                  deceased, active, version)
            SELECT gen_random_uuid(), 'B' || lpad(g::text, 9, '0'),
                   ($3::text[])[1 + g % 10], ($2::text[])[1 + (g / 10) % 10] || (g % 5000)::text,
                   DATE '1930-01-01' + (g % 30000), CASE WHEN g % 2 = 0 THEN 'female' ELSE 'male' END,
                   '[]', false, true, 1
            FROM generate_series($1::int, $4::int) AS g
            """,
            have + 1,
            FAMILIES,
            GIVENS,
            patients,
        )
        await conn.execute("ANALYZE patients")
        print(f"seeded {patients - have} patients in {time.perf_counter() - started:.1f}s")
    finally:
        await conn.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def run(url: str, queries: int) -> None:
    rng = random.Random(7)
    prefixes = [
        f"{rng.choice(['nunez', 'smith', 'okafor', 'muller', 'obrien'])}{rng.randint(1, 499)}"
        for _ in range(queries)
    ]
    db = Database(url, pool_size=2)
    actor = Actor.system("bench", channel="job")
    api_ms: list[float] = []
    try:
        for prefix in prefixes:
            started = time.perf_counter()
            async with db.transaction() as session:
                await service.search_patients(
                    session=session, actor=actor, query=service.SearchQuery(family=prefix), limit=20
                )
            api_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await db.dispose()
    conn = await asyncpg.connect(url)
    raw_ms: list[float] = []
    try:
        for prefix in prefixes:
            stmt = repository.search_statement(
                repository.SearchFilter(family_key=prefix), limit=21, after=None
            )
            sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            started = time.perf_counter()
            await conn.fetch(sql)
            raw_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    for name, values in (("service (+PHI log, commit)", api_ms), ("asyncpg, same SQL", raw_ms)):
        print(f"{name:28s} p50 {statistics.median(values):6.2f} ms   p95 {percentile(values, 0.95):6.2f} ms")
    print(f"ratio service/asyncpg p95: {percentile(api_ms, 0.95) / percentile(raw_ms, 0.95):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    asyncio.run(seed(url, args.patients))
    asyncio.run(run(url, args.queries))


if __name__ == "__main__":
    main()
