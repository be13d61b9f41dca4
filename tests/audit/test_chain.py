"""The hash chain the database keeps on phi_access_log: one chain per session, correct under
concurrent writers, rollbacks and savepoints, and hashing the documented canonical text."""

from __future__ import annotations

import asyncio

import asyncpg

from hims.audit import repository
from tests.audit.conftest import Verify, assert_one_valid_chain, canonical, log_reads, rows, staff


async def test_each_session_writes_one_chain_and_the_hash_is_the_documented_one(writer, database_url):
    await log_reads(writer, 3)
    other = await asyncpg.connect(database_url)
    try:
        await log_reads(other, 2)
        await log_reads(writer, 2)
    finally:
        await other.close()
    logged = await rows(writer)
    by_chain: dict[int, list[asyncpg.Record]] = {}
    for row in logged:
        by_chain.setdefault(row["chain"], []).append(row)
    assert sorted(len(r) for r in by_chain.values()) == [2, 5]
    for chain_rows in by_chain.values():
        assert_one_valid_chain(chain_rows)


async def test_what_the_inserter_sends_for_the_chain_columns_is_overwritten(writer):
    await writer.execute(
        "INSERT INTO phi_access_log (username, action, resource_type, channel, outcome, chain, seq, "
        "prev_hash, row_hash) VALUES ('x', 'read', 'Patient', 'api', 'success', 999, 41, $1, $1)",
        b"\x01" * 32,
    )
    [row] = await rows(writer)
    assert row["chain"] != 999
    assert row["seq"] == 0
    assert_one_valid_chain([row])


async def test_text_is_unambiguous_and_independent_of_session_settings(writer, database_url, verify: Verify):
    # Quotes, backslashes, commas, non-ASCII, NULL next to '': all hash as documented.
    await writer.execute("SET TimeZone = 'Asia/Kathmandu'")
    await writer.execute("SET DateStyle = 'SQL, DMY'")
    for username, resource_id, request_id in [
        ("o'brien", None, ""),
        ("back\\slash,comma", "", None),
        ("Müller-Łukasz", "Patient/é", "r,1"),
        ("NULL", "NULL", "'NULL'"),
    ]:
        await writer.execute(
            "INSERT INTO phi_access_log (username, action, resource_type, resource_id, request_id, "
            "ip_address, channel, outcome) VALUES ($1, 'read', 'Patient', $2, $3, '192.168.0.0/16', "
            "'api', 'success')",
            username,
            resource_id,
            request_id,
        )
    reader = await asyncpg.connect(database_url)  # default settings
    try:
        logged = await rows(reader)
    finally:
        await reader.close()
    assert_one_valid_chain(logged)
    assert len({canonical(r) for r in logged}) == len(logged)
    result = await verify()
    assert result.exit_code == 0, result.output


async def test_concurrent_writers_each_keep_a_valid_chain(database_url, verify: Verify):
    writers = [await asyncpg.connect(database_url) for _ in range(6)]
    try:

        async def write(conn: asyncpg.Connection, n: int) -> None:
            actor = staff(f"user{n}")
            for _ in range(15):
                await log_reads(conn, 1, actor=actor)
                async with conn.transaction():  # several rows in one transaction too
                    await log_reads(conn, 2, actor=actor)

        await asyncio.gather(*(write(conn, n) for n, conn in enumerate(writers)))
        logged = await rows(writers[0])
    finally:
        for conn in writers:
            await conn.close()
    assert len(logged) == 6 * 15 * 3
    by_user: dict[str, list[asyncpg.Record]] = {}
    for row in logged:
        by_user.setdefault(row["username"], []).append(row)
    assert len(by_user) == 6
    for user_rows in by_user.values():
        assert_one_valid_chain(user_rows)  # one session, one chain, in the order it wrote
    result = await verify()
    assert result.exit_code == 0, result.output
    assert f"checked {6 * 15 * 3} rows in 6 chains" in result.stdout


async def test_a_writer_with_an_open_transaction_does_not_hold_up_another(writer, database_url):
    # A global lock held until commit would make the second insert wait for the first
    # transaction; the lock timeout turns such a wait into an error instead of a hang.
    other = await asyncpg.connect(database_url, server_settings={"lock_timeout": "2s"})
    try:
        async with writer.transaction():
            await log_reads(writer, 1)
            await log_reads(other, 1)  # commits on its own while the first is still open
            committed = await other.fetchval("SELECT count(*) FROM phi_access_log")
            assert committed == 1
    finally:
        await other.close()
    assert len(await rows(writer)) == 2


async def test_rolled_back_transactions_and_savepoints_leave_no_hole(writer, verify: Verify):
    await log_reads(writer, 2)
    tx = writer.transaction()
    await tx.start()
    await log_reads(writer, 3)
    await tx.rollback()
    await log_reads(writer, 1)
    async with writer.transaction():
        await log_reads(writer, 1)
        savepoint = writer.transaction()  # nested: a savepoint
        await savepoint.start()
        await log_reads(writer, 2)
        await savepoint.rollback()
        await log_reads(writer, 1)
    failed = False
    try:
        async with writer.transaction():
            await log_reads(writer, 1)
            await writer.execute("SELECT 1 / 0")  # an error aborts the transaction
    except asyncpg.DivisionByZeroError:
        failed = True
    assert failed
    await log_reads(writer, 1)
    logged = await rows(writer)
    assert len(logged) == 6
    assert_one_valid_chain(logged)
    result = await verify()
    assert result.exit_code == 0, result.output


async def test_a_session_whose_first_rows_rolled_back_starts_its_chain_at_zero(writer):
    tx = writer.transaction()
    await tx.start()
    await log_reads(writer, 2)
    await tx.rollback()
    # The setting now exists in the session, empty: that too means "no chain yet".
    assert await writer.fetchval("SELECT current_setting('hims.audit_chain', true)") == ""
    await log_reads(writer, 2)
    logged = await rows(writer)
    assert [r["seq"] for r in logged] == [0, 1]
    assert_one_valid_chain(logged)


async def test_a_replaced_trigger_function_is_caught_by_the_verifier(writer):
    # The verifier hashes with its own copy of the canonical text, not the database function,
    # so a trigger function changed to hash something else (here: without the username) gives
    # rows that fail. Done in a transaction rolled back at the end: DDL is transactional.
    original = await writer.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'phi_access_log_chain'")
    forged = original.replace("quote_nullable(NEW.username)", "''")
    assert forged != original
    tx = writer.transaction()
    await tx.start()
    try:
        await log_reads(writer, 2)
        await writer.execute(
            "CREATE OR REPLACE FUNCTION phi_access_log_chain() RETURNS trigger "
            f"LANGUAGE plpgsql AS $body${forged}$body$"
        )
        await log_reads(writer, 2)
        first, last = await writer.fetchrow("SELECT min(id), max(id) FROM phi_access_log")
        found = await repository.check_chain_range(writer, first, last, None, None)
        assert found.rows == 4
        assert found.broken == 2
        assert found.first_broken == first + 2
    finally:
        await tx.rollback()
    restored = await writer.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'phi_access_log_chain'")
    assert restored == original
