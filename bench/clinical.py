"""Clinical benchmark: server-side p50/p95 of the chart, starting a consultation, name-prefix
search, and the same chart queries run directly with asyncpg (API overhead as a ratio).

Usage (on a database filled by `bench/generate.py`):
    DATABASE_URL=postgresql://.../hims_bench .venv/bin/python bench/clinical.py [--requests 500]

The app runs in-process (its lifespan, pool and middleware included); "server-side" time is
measured by an ASGI wrapper around the app, so the HTTP client's own cost is excluded.
Name-prefix search runs through the patients API and, directly, as the patients repository's own
statement (its `ix_patients_family_given_key` index).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from benchauth import bench_token
from hims import composition
from hims.app import create_app
from hims.core import records
from hims.fhir.domain import FhirView
from hims.patients import repository as patient_repository
from hims.settings import Settings

CHART_SQL = (
    "SELECT id, mrn, given_name, middle_name, family_name, date_of_birth, sex_at_birth, gender_identity, "
    "preferred_language, deceased, active FROM patients WHERE id = $1 AND deleted_at IS NULL",
    "SELECT * FROM conditions WHERE patient_id = $1 AND clinical_status IN ('active','recurrence','relapse') "
    "ORDER BY onset_date DESC NULLS LAST, created_at DESC",
    "SELECT * FROM allergies WHERE patient_id = $1 AND status = 'active' ORDER BY created_at",
    "SELECT * FROM prescriptions WHERE patient_id = $1 AND status = 'active' ORDER BY prescribed_at DESC",
    "SELECT DISTINCT ON (code) * FROM observations WHERE patient_id = $1 ORDER BY code, effective_at DESC",
    "SELECT * FROM consultations WHERE patient_id = $1 ORDER BY started_at DESC LIMIT 10",
)
LOG_SQL = (
    "INSERT INTO phi_access_log (username, patient_id, action, resource_type, resource_id, channel, outcome) "
    "VALUES ('bench', $1, 'read', 'Chart', $2, 'api', 'success')"
)


class Timed:
    """ASGI wrapper recording each request's time inside the server."""

    def __init__(self, app):
        self.app = app
        self.samples: list[float] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.samples.append((time.perf_counter() - start) * 1000)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, samples: list[float], goal: float | None = None) -> str:
    p50, p95 = pct(samples, 0.5), pct(samples, 0.95)
    verdict = "" if goal is None else f"  goal <= {goal:.0f} ms: {'MET' if p95 <= goal else 'MISSED'}"
    mean = statistics.mean(samples)
    return f"{name:<38} n={len(samples):>5}  p50={p50:7.2f} ms  p95={p95:7.2f} ms  mean={mean:7.2f}{verdict}"


def new_patient(i: int) -> dict[str, str]:
    """A registration body (clearly fake, unique enough to skip duplicate candidates)."""
    return {
        "given_name": "Bench",
        "family_name": f"Zz{uuid.uuid4().hex[:10]}",
        "date_of_birth": f"19{50 + i % 50:02d}-0{1 + i % 9}-1{i % 10}",
        "sex_at_birth": "female" if i % 2 else "male",
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    pg = await asyncpg.connect(url)
    counts = {
        t: await pg.fetchval(f"SELECT reltuples::bigint FROM pg_class WHERE relname = '{t}'")
        for t in ("patients", "observations")
    }
    counts["consultations"] = await pg.fetchval("SELECT count(*) FROM consultations")
    print(
        f"dataset: {counts['patients']:,} patients, {counts['consultations']:,} consultations, "
        f"~{counts['observations']:,} observations"
    )
    ids = [
        r[0]
        for r in await pg.fetch(
            "SELECT patient_id FROM consultations TABLESAMPLE SYSTEM (1) GROUP BY patient_id LIMIT $1",
            args.requests + args.warmup,
        )
    ]
    families = [r[0] for r in await pg.fetch("SELECT DISTINCT family_name FROM patients LIMIT 200")]
    rng = random.Random(7)

    # -- direct SQL: name-prefix search, the patients domain's own statement (its index)
    prefixes = [rng.choice(families)[:4] for _ in range(args.requests + args.warmup)]
    search: list[float] = []
    for i, prefix in enumerate(prefixes):
        key = await pg.fetchval("SELECT hims_name_key($1)", prefix)
        sql, values = patient_repository.search_sql(
            patient_repository.SearchFilter(family_key=key), limit=21, after=None, first=1
        )
        t = time.perf_counter()
        await pg.fetch(sql, *values)
        if i >= args.warmup:
            search.append((time.perf_counter() - t) * 1000)
    plan = "\n".join(r[0] for r in await pg.fetch("EXPLAIN " + sql, *values))
    uses_index = "ix_patients_family_given_key" in plan

    # -- direct SQL: the chart's statements in one transaction, as the API runs them
    direct: list[float] = []
    for i, pid in enumerate(ids):
        t = time.perf_counter()
        async with pg.transaction():
            for sql in CHART_SQL:
                await pg.fetch(sql, pid)
            await pg.execute(LOG_SQL, pid, str(pid))
        if i >= args.warmup:
            direct.append((time.perf_counter() - t) * 1000)
    await pg.close()

    # -- through the API, in-process
    settings = Settings(
        hims_env="development", database_url=SecretStr(url), log_level="warning", database_max_connections=5
    )
    app = create_app(settings)
    timed = Timed(app)
    headers = {"Authorization": f"Bearer {await bench_token(settings, url)}"}
    async with (
        app.router.lifespan_context(app),
        AsyncClient(
            transport=ASGITransport(app=timed, client=("127.0.0.1", 1)), base_url="http://bench"
        ) as http,
    ):
        for pid in ids[: args.warmup]:
            assert (await http.get(f"/api/v1/patients/{pid}/chart", headers=headers)).status_code == 200
        timed.samples.clear()
        client_side: list[float] = []
        for pid in ids[args.warmup :]:
            t = time.perf_counter()
            response = await http.get(f"/api/v1/patients/{pid}/chart", headers=headers)
            client_side.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, response.text
        chart = list(timed.samples)
        timed.samples.clear()
        for pid in ids[args.warmup :]:
            response = await http.post(
                f"/api/v1/patients/{pid}/consultations", json={"reason": "bench"}, headers=headers
            )
            assert response.status_code == 201, response.text
        start = list(timed.samples)
        timed.samples.clear()
        for prefix in prefixes[args.warmup :]:
            response = await http.get("/api/v1/patients", params={"family": prefix}, headers=headers)
            assert response.status_code == 200, response.text
        api_search = list(timed.samples)
        timed.samples.clear()
        # Creates alternate with and without the patient's FHIR rendering written in the same
        # statement (its cost, same run): the bench installs the record views without it.
        with_view = {a.table: FhirView(a) for a in composition.ADAPTERS}
        without_view = {t: v for t, v in with_view.items() if t != "patients"}
        create, create_unprojected = [], []
        for i in range(2 * args.requests):
            projected = i % 2 == 0
            records.install_views(with_view if projected else without_view)
            try:
                response = await http.post(
                    "/api/v1/patients",
                    params={"allow_duplicate": "true"},
                    json=new_patient(i),
                    headers=headers,
                )
            finally:
                records.install_views(with_view)
            assert response.status_code == 201, response.text
            (create if projected else create_unprojected).append(timed.samples.pop())

    print(line("name-prefix search (API, server-side)", api_search, 15.0))
    print(line("name-prefix search (direct asyncpg)", search) + ("" if uses_index else "  [index NOT used]"))
    print(line("chart summary (API, server-side)", chart, 25.0))
    print(line("chart summary (API, client-side)", client_side))
    print(line("chart queries (direct asyncpg)", direct))
    print(line("start consultation (API, server-side)", start))
    print(line("create patient (API, server-side)", create))
    print(line("create patient, no FHIR version (baseline)", create_unprojected))
    cost = pct(create, 0.5) / pct(create_unprojected, 0.5)
    print(f"writing the FHIR Patient with the row costs x{cost:.2f} at p50")
    ratio_p50 = pct(chart, 0.5) / pct(direct, 0.5)
    ratio_p95 = pct(chart, 0.95) / pct(direct, 0.95)
    print(
        f"API overhead on the chart: x{ratio_p50:.2f} at p50, x{ratio_p95:.2f} at p95 "
        "(API server-side time / direct asyncpg time)"
    )


if __name__ == "__main__":
    asyncio.run(main())
