"""`hims db seed`, through the real console script: idempotent, demo history only for the demo
patients it made itself, refused where real records live except for reference data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from hims.models import metadata
from tests.patients.factories import make_patient
from tests.support import base_env, hims

CLINICAL_TABLES = ("consultations", "observations", "conditions", "allergies", "prescriptions", "lab_orders")


async def _counts(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            table.name: await conn.fetchval(f'SELECT count(*) FROM "{table.name}"')
            for table in metadata.sorted_tables
        }
    finally:
        await conn.close()


def _seed(database_url: str, tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    variables = {"DATABASE_URL": database_url, "HIMS_ENV": "test", "LOG_LEVEL": "warning", **env}
    result = hims("db", "seed", *args, env=base_env(tmp_path, **variables), timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


def _started() -> float:
    return REGISTRY.get_sample_value("hims_consultation_started_total") or 0.0


async def _seed_in_process(database_url: str, tmp_path: Path) -> str:
    """`hims db seed` in this process (its metrics are this process's registry)."""
    from hims.cli import app

    env = {"DATABASE_URL": database_url, "HIMS_ENV": "test", "LOG_LEVEL": "warning", "COLUMNS": "200"}
    env["HIMS_DATA_DIR"] = str(tmp_path / "var")
    result = await asyncio.to_thread(CliRunner().invoke, app, ["db", "seed"], env=env)
    assert result.exit_code == 0, result.output
    return str(result.output)


async def test_seed_twice_adds_nothing_and_leaves_real_patients_alone(
    client, settings, database_url, tmp_path
):
    registered = await make_patient(client, settings)
    started = _started()

    await _seed_in_process(database_url, tmp_path)
    first = await _counts(database_url)
    assert first["patients"] > 1
    assert all(first[t] > 0 for t in CLINICAL_TABLES), first

    output = await _seed_in_process(database_url, tmp_path)
    assert await _counts(database_url) == first
    assert all(line.endswith(": 0") for line in output.splitlines() if line.startswith("seeded ")), output

    conn = await asyncpg.connect(database_url)
    try:
        for table in (*CLINICAL_TABLES, "appointments", "documents"):
            owned = await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE patient_id = $1::uuid", registered["id"]
            )
            assert owned == 0, table
    finally:
        await conn.close()
    # Seeded consultations are not consultations started by anyone.
    assert _started() == started


@pytest.mark.parametrize("environment", ["staging", "production"])
async def test_demo_data_is_refused_where_real_records_live(database_url, tmp_path, environment):
    before = await _counts(database_url)
    code, output = _seed(database_url, tmp_path, HIMS_ENV=environment, JWT_SECRET="k" * 48)
    assert code == 2
    assert "refused" in output
    assert "--reference-data-only" in output
    assert await _counts(database_url) == before


async def test_reference_data_only_loads_facilities_and_code_lists_in_production(database_url, tmp_path):
    before = await _counts(database_url)
    code, output = _seed(
        database_url, tmp_path, "--reference-data-only", HIMS_ENV="production", JWT_SECRET="k" * 48
    )
    assert code == 0, output
    after = await _counts(database_url)
    # Facilities and departments, and their FHIR rendering (Organization, Location); nothing else.
    grown = {table for table in after if after[table] != before[table] and not table.startswith("fhir_")}
    assert grown == {"facilities", "departments"}, grown
    assert "seeded clinical records" not in output
