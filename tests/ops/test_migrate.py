"""`hims db migrate/verify/downgrade` through the real console script on fresh databases."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from hims.ops import migrate
from tests.conftest import SERVER_URL, _with_database
from tests.support import HIMS, base_env, hims

pytestmark = pytest.mark.slow


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(SERVER_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _query(url: str, sql: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A brand-new database nobody has migrated."""
    name = f"hims_migrate_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(SERVER_URL, name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def env(empty_database: str, tmp_path) -> dict[str, str]:
    return base_env(tmp_path, DATABASE_URL=empty_database)


def heads_in(url: str) -> set[str]:
    return {r["version_num"] for r in _query(url, "SELECT version_num FROM alembic_version")}


def test_migrate_then_verify_on_an_empty_database(env, empty_database):
    first = hims("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "empty database" in first.stdout
    verify = hims("db", "verify", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "database verified" in verify.stdout
    again = hims("db", "migrate", env=env)  # idempotent
    assert again.returncode == 0, again.stderr
    assert "already at head" in again.stdout
    assert heads_in(empty_database) == set(migrate.head_revisions())


def test_concurrent_migrations_serialise_on_the_advisory_lock(env, empty_database):
    processes = [
        subprocess.Popen(
            [HIMS, "db", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    stdout = [out for out, _ in outputs]
    # One did the work; the other waited for the lock and then found nothing to do.
    assert sum("empty database" in out for out in stdout) == 1
    assert sum("already at head" in out for out in stdout) == 1
    assert hims("db", "verify", env=env).returncode == 0


def test_verify_lists_every_drift(env, empty_database):
    assert hims("db", "migrate", env=env).returncode == 0
    _query(empty_database, "ALTER TABLE patients ADD COLUMN stray_notes text")
    _query(empty_database, "CREATE TABLE stray_table (id int)")
    _query(empty_database, "DROP INDEX ix_phi_access_log_patient_time")
    _query(empty_database, "DROP EXTENSION fuzzystrmatch")
    result = hims("db", "verify", env=env)
    assert result.returncode == 1
    drift = [line for line in result.stdout.splitlines() if line.startswith("drift: ")]
    text = "\n".join(drift)
    assert "patients.stray_notes" in text
    assert "stray_table" in text
    assert "ix_phi_access_log_patient_time" in text
    assert "fuzzystrmatch" in text
    assert len(drift) >= 4


def test_verify_knows_the_phi_log_time_index_and_reports_it_invalid(env, empty_database):
    assert hims("db", "migrate", env=env).returncode == 0
    index = "ix_phi_access_log_time"
    _query(empty_database, f"DROP INDEX {index}")
    result = hims("db", "verify", env=env)
    assert result.returncode == 1
    assert f"index {index} on phi_access_log is in the models but missing" in result.stdout
    # A concurrent build that fails (here: duplicates under UNIQUE) leaves an INVALID index.
    _query(
        empty_database,
        "INSERT INTO phi_access_log (occurred_at, username, action, resource_type, channel, outcome) "
        "SELECT '2026-01-01', 'u', 'read', 'Patient', 'api', 'success' FROM generate_series(1, 2)",
    )

    async def build() -> None:
        conn = await asyncpg.connect(empty_database)
        try:
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    f"CREATE UNIQUE INDEX CONCURRENTLY {index} ON phi_access_log (occurred_at)"
                )
        finally:
            await conn.close()

    asyncio.run(build())
    result = hims("db", "verify", env=env)
    assert result.returncode == 1
    assert f"{index} on phi_access_log is INVALID" in result.stdout


def test_verify_reports_pending_migrations(env, empty_database):
    result = hims("db", "verify", env=env)
    assert result.returncode == 1
    assert "run `hims db migrate`" in result.stdout


def test_downgrade_without_yes_and_without_terminal_changes_nothing(env, empty_database):
    assert hims("db", "migrate", env=env).returncode == 0
    result = hims("db", "downgrade", "0002_audit", env=env)
    assert result.returncode == 1
    assert "--yes" in result.stderr
    assert heads_in(empty_database) == set(migrate.head_revisions())


def test_downgrade_with_yes(env, empty_database):
    assert hims("db", "migrate", env=env).returncode == 0
    result = hims("db", "downgrade", "0002_audit", "--yes", env=env)
    assert result.returncode == 0, result.stderr
    assert heads_in(empty_database) == {"0002_audit"}
    tables = {r["tablename"] for r in _query(empty_database, "SELECT tablename FROM pg_tables")}
    assert "patients" not in tables
    assert "phi_access_log" in tables


def test_unreachable_database_is_one_line_not_a_traceback(tmp_path):
    env = base_env(tmp_path, DATABASE_URL="postgresql://hims:hunter2@127.0.0.1:1/hims")
    for command in (["db", "migrate"], ["db", "verify"]):
        result = hims(*command, env=env)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            "database error: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)"
        ]
        assert "hunter2" not in result.stderr + result.stdout


def test_missing_database_is_named(tmp_path):
    url = _with_database(SERVER_URL, "hims_does_not_exist")
    result = hims("db", "verify", env=base_env(tmp_path, DATABASE_URL=url))
    assert result.returncode == 1
    assert 'database "hims_does_not_exist" does not exist' in result.stderr
    assert "Traceback" not in result.stderr


def test_a_migration_stuck_behind_a_long_transaction_times_out_and_changes_nothing(env, empty_database):
    assert hims("db", "migrate", env=env).returncode == 0
    assert hims("db", "downgrade", "0006_clinical_b", "--yes", env=env).returncode == 0

    async def migrate_while_a_report_reads_consultations() -> subprocess.CompletedProcess[str]:
        report = await asyncpg.connect(empty_database)
        try:
            async with report.transaction():
                await report.fetchval("SELECT count(*) FROM consultations")  # holds its lock
                return await asyncio.to_thread(hims, "db", "migrate", env=env, timeout=30)
        finally:
            await report.close()

    result = asyncio.run(migrate_while_a_report_reads_consultations())
    assert result.returncode == 1
    assert "lock timeout" in result.stderr
    assert "0010_consultations_id_index" not in heads_in(empty_database)
    index = "SELECT 1 FROM pg_indexes WHERE indexname = 'ix_consultations_id'"
    assert _query(empty_database, index)
    again = hims("db", "migrate", env=env)  # the report has ended
    assert again.returncode == 0, again.stderr
    assert heads_in(empty_database) == set(migrate.head_revisions())
    assert not _query(empty_database, index)
