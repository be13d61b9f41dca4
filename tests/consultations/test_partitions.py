from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from httpx import AsyncClient
from typer.testing import CliRunner

from hims import composition
from hims.cli import app as cli_app
from hims.consultations import service as consultations
from hims.consultations.partitions import partition_name
from hims.consultations.repository import select_by_id_sql
from hims.ops import migrate
from hims.ops.partitions import after_migrate, ensure

THIS_YEAR = datetime.now(UTC).year


async def _children(sql) -> list[str]:
    rows = await sql.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'consultations'::regclass ORDER BY 1"
    )
    return [r[0] for r in rows]


async def _drop(sql, year: int) -> None:
    # Detaching first removes the per-partition foreign keys of tables referencing consultations.
    name = partition_name(year)
    if await sql.fetchval("SELECT to_regclass($1)", name):
        await sql.execute(f"ALTER TABLE consultations DETACH PARTITION {name}")
        await sql.execute(f"DROP TABLE {name}")


async def test_rows_of_two_years_land_in_their_own_partitions(
    client: AsyncClient, physician, patient_id, sql
):
    for started in ("2025-07-01T08:00:00Z", None):
        body = {"started_at": started} if started else {}
        response = await client.post(
            f"/api/v1/patients/{patient_id}/consultations", json=body, headers=physician
        )
        assert response.status_code == 201, response.text
    children = await _children(sql)
    assert {"consultations_y2025", partition_name(THIS_YEAR), partition_name(THIS_YEAR + 1)} <= set(children)
    assert not any("default" in c for c in children)  # no catch-all partition
    placed = await sql.fetch("SELECT tableoid::regclass::text AS part FROM consultations ORDER BY started_at")
    assert [r["part"] for r in placed] == ["consultations_y2025", partition_name(THIS_YEAR)]
    plan = "\n".join(
        r[0]
        for r in await sql.fetch(
            "EXPLAIN SELECT * FROM consultations "
            "WHERE started_at >= '2025-01-01T00:00:00Z' AND started_at < '2026-01-01T00:00:00Z'"
        )
    )
    assert "consultations_y2025" in plan
    assert partition_name(THIS_YEAR) not in plan  # pruned


async def test_ensure_is_idempotent_and_verify_reports_missing(database_url, partitions, sql):
    again = await ensure(database_url, from_year=2024)
    assert again.created == []
    # Drop next year's partition: verify must say so, ensure must bring it back.
    await _drop(sql, THIS_YEAR + 1)
    try:
        drift = await asyncio.to_thread(migrate.verify, database_url, composition.VERIFY_CHECKS)
        assert f"partitions: {partition_name(THIS_YEAR + 1)} is missing" in " ".join(drift.problems)
    finally:
        result = await ensure(database_url)
    assert result.created == [partition_name(THIS_YEAR + 1)]
    drift = await asyncio.to_thread(migrate.verify, database_url, composition.VERIFY_CHECKS)
    assert drift.ok, drift.problems


def test_verify_check_and_migrate_step_are_in_the_composition_root():
    assert consultations.partition_problems in composition.VERIFY_CHECKS
    assert ("consultation partitions", after_migrate) in composition.AFTER_MIGRATE


async def test_cli_ensure_creates_years_ahead(database_url, partitions, monkeypatch, sql):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("HIMS_ENV", "test")
    far = THIS_YEAR + 5
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["db", "partitions", "ensure", "--years-ahead", "5"]
        )
        assert result.exit_code == 0, result.output
        assert f"created {partition_name(far)}" in result.output
        assert partition_name(far) in await _children(sql)
        assert (await asyncio.to_thread(migrate.verify, database_url, composition.VERIFY_CHECKS)).ok
    finally:
        for year in range(THIS_YEAR + 3, far + 1):
            await _drop(sql, year)


async def test_after_migrate_hook_reports_only_when_it_created_something(database_url, partitions):
    assert await after_migrate(database_url) is None


async def test_hims_db_verify_command_is_clean_with_partitions(database_url, partitions):
    # A fresh process: the models must be complete from `hims.models` alone, not from app imports.
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": database_url, "HIMS_ENV": "test"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "hims", "db", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database verified" in result.stdout


async def _consultation_in_2025(client: AsyncClient, physician, patient_id) -> str:
    response = await client.post(
        f"/api/v1/patients/{patient_id}/consultations",
        json={"started_at": "2025-07-01T08:00:00Z"},
        headers=physician,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_consultation_keys_follow_inserts_moves_and_deletes(
    client: AsyncClient, physician, patient_id, sql
):
    cid = await _consultation_in_2025(client, physician, patient_id)

    async def key() -> list[tuple[str, str]]:
        rows = await sql.fetch(
            "SELECT k.started_at::text, c.tableoid::regclass::text FROM consultation_keys k "
            "LEFT JOIN consultations c ON c.id = k.id AND c.started_at = k.started_at WHERE k.id = $1",
            cid,
        )
        return [(r[0], r[1]) for r in rows]

    assert await key() == [("2025-07-01 08:00:00+00", "consultations_y2025")]
    await sql.execute("UPDATE consultations SET started_at = '2025-08-01T08:00:00Z' WHERE id = $1", cid)
    assert await key() == [("2025-08-01 08:00:00+00", "consultations_y2025")]
    moved = datetime(THIS_YEAR, 1, 2, 8, tzinfo=UTC)
    await sql.execute("UPDATE consultations SET started_at = $2 WHERE id = $1", cid, moved)
    assert await key() == [(f"{THIS_YEAR}-01-02 08:00:00+00", partition_name(THIS_YEAR))]  # moved partition
    # An id is unique across partitions, which the partitioned key (id, started_at) is not.
    with pytest.raises(asyncpg.UniqueViolationError):
        await sql.execute(
            "INSERT INTO consultations (id, started_at, patient_id, kind, status, version, created_at, "
            "updated_at) SELECT id, '2025-03-01T08:00:00Z', patient_id, kind, status, 1, now(), now() "
            "FROM consultations WHERE id = $1",
            cid,
        )
    await sql.execute("DELETE FROM consultations WHERE id = $1", cid)
    assert await key() == []


async def test_a_lookup_by_id_reads_one_partition(client: AsyncClient, physician, patient_id, sql):
    cid = await _consultation_in_2025(client, physician, patient_id)
    partitions = await _children(sql)
    assert len(partitions) >= 3
    await sql.execute("SET plan_cache_mode = force_generic_plan")  # as a pooled, prepared statement
    plan = "\n".join(
        r[0] for r in await sql.fetch("EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF) " + select_by_id_sql(), cid)
    )
    scans = [line for line in plan.splitlines() if " on consultations_y" in line]
    assert len(scans) == len(partitions), plan
    assert sum("never executed" not in line for line in scans) == 1, plan
    fetched = await client.get(f"/api/v1/consultations/{cid}", headers=physician)
    assert fetched.status_code == 200
    assert fetched.json()["started_at"].startswith("2025-07-01")
