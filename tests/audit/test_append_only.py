"""phi_access_log refuses UPDATE, DELETE and TRUNCATE for every role, the superuser included,
except in replica mode (a restore, logical replication)."""

from __future__ import annotations

import asyncpg
import pytest

from tests.audit.conftest import log_reads, rows

REFUSED = [
    ("UPDATE", "UPDATE phi_access_log SET username = 'someone else'"),
    ("DELETE", "DELETE FROM phi_access_log"),
    ("DELETE", "DELETE FROM phi_access_log WHERE false"),  # even when it would change nothing
    ("TRUNCATE", "TRUNCATE phi_access_log"),
    (
        "UPDATE",
        "INSERT INTO phi_access_log TABLE phi_access_log ON CONFLICT (id) DO UPDATE SET action = 'x'",
    ),
]


@pytest.mark.parametrize(("operation", "sql"), REFUSED)
async def test_changing_or_removing_rows_is_refused_even_for_the_superuser(writer, operation, sql):
    assert await writer.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    await log_reads(writer, 3)
    before = await rows(writer)
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await writer.execute(sql)
    assert refused.value.args[0] == f"phi_access_log is append-only: {operation} refused"
    assert "never changed or removed" in (refused.value.hint or "")
    assert await rows(writer) == before


async def test_replica_mode_lets_a_restore_through(writer, admin):
    await log_reads(writer, 3)
    first = (await rows(writer))[0]["id"]
    await admin.execute("UPDATE phi_access_log SET outcome = 'error' WHERE id = $1", first)
    assert (await rows(writer))[0]["outcome"] == "error"
    await admin.execute("DELETE FROM phi_access_log WHERE id = $1", first)
    assert len(await rows(writer)) == 2
    await admin.execute("TRUNCATE phi_access_log")
    assert await rows(writer) == []
    # A restore copies rows back as they were, hashes included: the insert trigger stays out of
    # the way too (it would otherwise start a new chain).
    await admin.execute(
        "INSERT INTO phi_access_log (id, username, action, resource_type, channel, outcome, chain, seq, "
        "prev_hash, row_hash) VALUES (7, 'x', 'read', 'Patient', 'api', 'success', 42, 3, $1, $2)",
        b"\x01" * 32,
        b"\x02" * 32,
    )
    [restored] = await rows(writer)
    assert (restored["chain"], restored["seq"], restored["row_hash"]) == (42, 3, b"\x02" * 32)


async def test_a_log_restored_without_its_chain_sequence_does_not_block_inserts(writer, admin, database_url):
    # A data-only restore of the table alone brings chains the sequence has not reached yet.
    upcoming = await admin.fetchval(
        "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM phi_access_log_chain_seq"
    )
    for chain in range(upcoming, upcoming + 3):
        await admin.execute(
            "INSERT INTO phi_access_log (username, action, resource_type, channel, outcome, chain, seq, "
            "prev_hash, row_hash) VALUES ('x', 'read', 'Patient', 'api', 'success', $1, 0, $2, $2)",
            chain,
            bytes(32),
        )
    await log_reads(writer, 2)
    [first, second] = await rows(writer, "username <> 'x'")
    assert first["chain"] == second["chain"] >= upcoming + 3
