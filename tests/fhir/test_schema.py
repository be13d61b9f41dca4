"""The FHIR tables match the models, and searches use the indexes built for them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hims.core.db import Database
from hims.fhir import repository as repo
from hims.fhir import search, versions
from hims.ops import migrate


def test_schema_matches_models(database_url: str) -> None:
    drift = migrate.verify(database_url)
    assert drift.ok, drift.problems


async def _store_patients(db: Database, patients: list[dict[str, Any]]) -> None:
    """Write these Patients (each with its id) through the store's batch writer."""
    now = datetime.now(UTC)
    writes = [
        versions.prepare(p, resource_type="Patient", id_=p["id"], version_id=1, now=now, method="PUT")
        for p in patients
    ]
    async with db.transaction() as session:
        await repo.write(await repo.connection(session), writes)


async def test_name_prefix_and_birthdate_use_their_indexes(db: Database) -> None:
    patients = [
        {
            "resourceType": "Patient",
            "id": f"x{n}",
            "name": [{"family": f"Fam{n:04d}", "given": ["G"]}],
            "birthDate": f"{1920 + n % 90}-01-{1 + n % 28:02d}",
        }
        for n in range(3000)
    ]
    await _store_patients(db, patients)
    async with db.transaction() as session:
        conn = await repo.connection(session)
        await conn.execute("ANALYZE fhir_idx_string; ANALYZE fhir_idx_date; ANALYZE fhir_resources")
        for params, index in (
            (["name", "fam012"], "ix_fhir_idx_string_prefix"),
            (["birthdate", "1931-01-05"], "ix_fhir_idx_date"),
        ):
            request = search.parse("Patient", [(params[0], params[1])])
            where = " AND ".join(request.where)
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    f"EXPLAIN SELECT r.id FROM fhir_resources r WHERE {where} ORDER BY r.rid LIMIT 21",
                    *request.builder.args,
                )
            )
            assert index in plan, plan
            if params[0] == "birthdate":  # the scan of low dates is bounded on both sides
                conds = [line for line in plan.splitlines() if "Index Cond" in line]
                assert any("low >=" in c and "low <=" in c for c in conds), plan


async def test_a_common_token_value_is_estimated_as_common(db: Database) -> None:
    """Extended statistics (0011_fhir_idx_statistics): the planner sees that a tag one Patient in
    ten carries matches hundreds of rows, not a handful, and pages instead of sorting them all."""
    patients = [
        {
            "resourceType": "Patient",
            "id": f"t{n}",
            "meta": {"tag": [{"system": "urn:cohort", "code": f"cohort{n % 10}"}]},
            "gender": ("female", "male")[n % 2],
            "identifier": [{"system": "urn:mrn", "value": f"M{n}"}],
            "telecom": [{"system": "phone", "value": f"555-{n:04d}"}],
        }
        for n in range(3000)
    ]
    await _store_patients(db, patients)
    async with db.transaction() as session:
        conn = await repo.connection(session)
        await conn.execute("ANALYZE fhir_idx_token")
        request = search.parse("Patient", [("_tag", "urn:cohort|cohort3")])
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT i.rid FROM fhir_idx_token i WHERE i.rtype = 'Patient' "
            "AND i.param = '_tag' AND i.system = 'urn:cohort' AND i.code = 'cohort3'"
        )
        estimated = plan[0]["Plan"]["Plan Rows"]  # the session's connection decodes json
        assert 100 <= estimated <= 900, estimated  # 300 match
        found = await search.execute(conn, request)
        assert len(found.rows) == min(300, request.count)
