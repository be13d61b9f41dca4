"""Migration 0015_audit_chain on a log that already has rows: they get a chain of their own in id
order and verify; the schema matches the models; the downgrade gives the plain table back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hims.ops import migrate
from tests.audit.conftest import assert_one_valid_chain, log_reads, rows
from tests.conftest import SERVER_URL, _with_database
from tests.support import base_env, hims

pytestmark = pytest.mark.slow

BEFORE = ("0014_duplicate_blocking",)  # phi_access_log with its indexes, no chain


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(SERVER_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def old_database() -> AsyncIterator[str]:
    """A database migrated up to just before the chain, with a log written by an older release."""
    name = f"hims_chain_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = _with_database(SERVER_URL, name)
    try:
        for target in BEFORE:
            await asyncio.to_thread(migrate.upgrade, url, target)
        conn = await asyncpg.connect(url)
        try:
            # Times deliberately out of id order (a long transaction commits late), NULLs, quotes.
            await conn.execute(
                "INSERT INTO phi_access_log (occurred_at, user_id, username, patient_id, action, "
                "resource_type, resource_id, ip_address, request_id, channel, outcome) "
                "SELECT now() - (n % 7) * interval '1 hour', "
                "CASE WHEN n % 3 = 0 THEN gen_random_uuid() END, 'user''' || n, gen_random_uuid(), "
                "'read', 'Patient', CASE WHEN n % 2 = 0 THEN 'Patient/' || n END, "
                "CASE WHEN n % 5 = 0 THEN '10.0.0.' || n % 250 END::inet, '', 'api', 'success' "
                "FROM generate_series(1, 500) AS n"
            )
        finally:
            await conn.close()
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_existing_rows_are_chained_in_id_order_and_verify(old_database, tmp_path):
    await asyncio.to_thread(migrate.upgrade, old_database)
    conn = await asyncpg.connect(old_database)
    try:
        old = await rows(conn)
        assert len(old) == 500
        assert_one_valid_chain(old)  # seq follows id, hashes as documented
        await log_reads(conn, 3)
        new = await rows(conn, "id > $1", old[-1]["id"])
        assert_one_valid_chain(new)
        assert new[0]["chain"] != old[0]["chain"]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM phi_access_log")
    finally:
        await conn.close()
    env = base_env(tmp_path, DATABASE_URL=old_database)
    checked = await asyncio.to_thread(hims, "audit", "verify", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "checked 503 rows in 2 chains" in checked.stdout
    schema = await asyncio.to_thread(hims, "db", "verify", env=env)
    assert schema.returncode == 0, schema.stdout + schema.stderr


async def test_downgrade_gives_the_plain_table_back_and_upgrading_again_works(old_database):
    await asyncio.to_thread(migrate.upgrade, old_database)
    await asyncio.to_thread(migrate.downgrade, old_database, "0014_duplicate_blocking")
    conn = await asyncpg.connect(old_database)
    try:
        columns = {
            r[0]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'phi_access_log'"
            )
        }
        assert not columns & {"chain", "seq", "prev_hash", "row_hash"}
        triggers = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'phi_access_log'::regclass AND NOT tgisinternal"
        )
        assert triggers == 0
        assert await conn.fetchval("SELECT to_regproc('hims_log_outside_write') IS NULL")
        assert await conn.fetchval("SELECT count(*) FROM phi_access_log") == 500
    finally:
        await conn.close()
    await asyncio.to_thread(migrate.upgrade, old_database)
    conn = await asyncpg.connect(old_database)
    try:
        assert_one_valid_chain(await rows(conn))
    finally:
        await conn.close()
