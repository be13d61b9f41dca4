"""`hims audit verify`: passes an intact log, reports the first broken row (exit 1) with its
hashes, checks a time range against the rows before it, refuses bad input (exit 2)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from tests.audit.conftest import Verify, canonical, log_reads, rows


def first_broken_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("first broken row"))


async def test_an_intact_log_passes(writer, database_url, verify: Verify):
    await log_reads(writer, 40)
    result = await verify()
    assert result.exit_code == 0, result.output
    assert "checked 40 rows in 1 chain in" in result.stdout
    assert "rows/s" in result.stdout
    assert "intact" in result.stdout


async def test_an_empty_log_passes(verify: Verify):
    result = await verify()
    assert result.exit_code == 0, result.output
    assert "checked 0 rows" in result.stdout


async def test_a_row_edited_in_replica_mode_is_reported_with_its_hashes(writer, admin, verify: Verify):
    await log_reads(writer, 10)
    victim = (await rows(writer))[4]
    await admin.execute("UPDATE phi_access_log SET patient_id = NULL WHERE id = $1", victim["id"])
    edited = (await rows(writer, "id = $1", victim["id"]))[0]
    result = await verify()
    assert result.exit_code == 1, result.output
    assert "BROKEN: 1 row fails its checks" in result.stdout
    assert first_broken_line(result.stdout) == (
        f"first broken row (lowest id): id {victim['id']}, chain {victim['chain']}, seq 4"
    )
    assert "row_hash is not sha256(prev_hash || canonical text of the row)" in result.stdout
    found = victim["row_hash"].hex()
    assert f"found    {found}" in result.stdout
    # The expected hash is the edited content's: the verifier recomputed it.
    expected = next(line for line in result.stdout.splitlines() if line.strip().startswith("expected"))
    assert expected.split()[-1] != found
    assert len(bytes.fromhex(expected.split()[-1])) == 32
    assert edited["row_hash"] == victim["row_hash"]


async def test_a_row_deleted_from_the_middle_of_a_chain_is_reported(writer, admin, verify: Verify):
    await log_reads(writer, 10)
    logged = await rows(writer)
    await admin.execute("DELETE FROM phi_access_log WHERE id = $1", logged[5]["id"])
    result = await verify()
    assert result.exit_code == 1, result.output
    after = logged[6]
    assert first_broken_line(result.stdout) == (
        f"first broken row (lowest id): id {after['id']}, chain {after['chain']}, seq 6"
    )
    assert f"seq gap: the row before it in chain {after['chain']} has seq 4, not 5" in result.stdout
    assert "prev_hash is not the row_hash of the row before it in the chain" in result.stdout
    assert f"expected {logged[4]['row_hash'].hex()}" in result.stdout
    assert f"found    {after['prev_hash'].hex()}" in result.stdout


async def test_the_first_rows_of_a_chain_deleted_are_reported(writer, admin, verify: Verify):
    await log_reads(writer, 4)
    logged = await rows(writer)
    await admin.execute("DELETE FROM phi_access_log WHERE id = $1", logged[0]["id"])
    result = await verify()
    assert result.exit_code == 1, result.output
    assert f"id {logged[1]['id']}, chain {logged[1]['chain']}, seq 1" in result.stdout
    assert "seq 0 is missing" in result.stdout


async def test_a_wrongly_recomputed_hash_is_reported(writer, admin, verify: Verify):
    await log_reads(writer, 6)
    logged = await rows(writer)
    victim = logged[2]
    forged = hashlib.sha256(victim["prev_hash"] + b"some other content").digest()
    await admin.execute(
        "UPDATE phi_access_log SET username = 'mallory', row_hash = $2 WHERE id = $1", victim["id"], forged
    )
    result = await verify()
    assert result.exit_code == 1, result.output
    # The forged row fails its own hash, and the next row no longer links to it.
    assert "BROKEN: 2 rows fail their checks" in result.stdout
    assert f"id {victim['id']}, chain {victim['chain']}, seq 2" in result.stdout
    assert f"found    {forged.hex()}" in result.stdout


async def test_a_correctly_rehashed_edit_breaks_the_next_link(writer, admin, verify: Verify):
    # Whoever edits a row and recomputes its hash right must rewrite every later row of the
    # chain too; otherwise the next row still points at the old hash.
    await log_reads(writer, 5)
    logged = await rows(writer)
    victim = logged[1]
    await admin.execute("UPDATE phi_access_log SET username = 'mallory' WHERE id = $1", victim["id"])
    [edited] = await rows(writer, "id = $1", victim["id"])
    rehashed = hashlib.sha256(edited["prev_hash"] + canonical(edited).encode()).digest()
    await admin.execute("UPDATE phi_access_log SET row_hash = $2 WHERE id = $1", victim["id"], rehashed)
    result = await verify()
    assert result.exit_code == 1, result.output
    nxt = logged[2]
    assert f"id {nxt['id']}, chain {nxt['chain']}, seq 2" in result.stdout
    assert f"expected {rehashed.hex()}" in result.stdout
    assert f"found    {nxt['prev_hash'].hex()}" in result.stdout


async def _daily_rows(writer, days: int) -> list:
    """One row per day of December 2026 (occurred_at given explicitly), in one chain."""
    for day in range(1, days + 1):
        await writer.execute(
            "INSERT INTO phi_access_log (occurred_at, username, action, resource_type, channel, outcome) "
            "VALUES ($1, 'dr.osei', 'read', 'Patient', 'api', 'success')",
            datetime(2026, 12, day, 12, tzinfo=UTC),
        )
    return await rows(writer)


async def test_from_to_checks_only_that_range(writer, admin, verify: Verify):
    logged = await _daily_rows(writer, 30)
    await admin.execute("UPDATE phi_access_log SET action = 'search' WHERE id = $1", logged[19]["id"])
    early = await verify("--from", "2026-12-01", "--to", "2026-12-10")
    assert early.exit_code == 0, early.output
    assert "checked 10 rows with occurred_at in [2026-12-01T00:00:00+00:00" in early.stdout
    late = await verify("--from", "2026-12-15T00:00:00+01:00")
    assert late.exit_code == 1, late.output
    assert "checked 16 rows" in late.stdout
    assert f"id {logged[19]['id']}, chain {logged[19]['chain']}, seq 19" in late.stdout
    whole = await verify()
    assert whole.exit_code == 1


async def test_the_first_row_in_range_is_checked_against_its_real_predecessor(writer, admin, verify: Verify):
    logged = await _daily_rows(writer, 12)
    await admin.execute("DELETE FROM phi_access_log WHERE id = $1", logged[9]["id"])  # December 10th
    result = await verify("--from", "2026-12-11", "--to", "2026-12-12")
    assert result.exit_code == 1, result.output
    assert "checked 2 rows" in result.stdout
    assert f"id {logged[10]['id']}, chain {logged[10]['chain']}, seq 10" in result.stdout
    assert "has seq 8, not 9" in result.stdout
    assert (await verify("--from", "2026-12-01", "--to", "2026-12-09")).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "--from 'yesterday' is not an ISO 8601 date or time"),
        (["--to", "2026-13-01"], "--to '2026-13-01' is not an ISO 8601 date or time"),
        (["--from", "2026-12-02", "--to", "2026-12-01"], "is after --to"),
        (["--jobs", "0"], "Invalid value for '--jobs'"),
    ],
)
async def test_bad_input_exits_2_with_a_clear_error(writer, verify: Verify, args, message):
    await log_reads(writer, 2)
    result = await verify(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "checked" not in result.stdout
