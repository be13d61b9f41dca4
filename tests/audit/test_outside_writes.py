"""Writes to patient data made without ``hims.actor`` (psql, a migration) are logged by the
database (migration 0016 attaches ``hims_log_outside_write()`` to every PHI table); the
application's own writes set it and are not logged twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hims.audit import repository
from hims.audit.outside_writes import PHI_TABLES, outside_write_trigger_ddl
from tests.audit.conftest import rows


@pytest.fixture
async def tx(writer: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """``writer`` inside a transaction that is rolled back at the end, triggers and all."""
    transaction = writer.transaction()
    await transaction.start()
    try:
        yield writer
    finally:
        await transaction.rollback()


async def _new_patient(conn: asyncpg.Connection) -> uuid.UUID:
    patient_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex_at_birth, identifiers, "
        "deceased, active, version) VALUES ($1, $2, 'Ama', 'Mensah', '1980-02-03', 'female', '[]', "
        "false, true, 1)",
        patient_id,
        f"T{uuid.uuid4().hex[:10]}",
    )
    return patient_id


async def test_writes_without_the_actor_setting_are_logged(tx):
    patient_id = await _new_patient(tx)
    allergy_id = await tx.fetchval(
        "INSERT INTO allergies (id, patient_id, substance, severity, status, version) "
        "VALUES (gen_random_uuid(), $1, 'penicillin', 'severe', 'active', 1) RETURNING id",
        patient_id,
    )
    await tx.execute("UPDATE patients SET given_name = 'Abena' WHERE id = $1", patient_id)
    await tx.execute("DELETE FROM allergies WHERE id = $1", allergy_id)
    logged = await rows(tx, "channel = 'db'")
    assert [(r["action"], r["resource_type"], r["resource_id"]) for r in logged] == [
        ("create", "Patient", str(patient_id)),
        ("create", "AllergyIntolerance", str(allergy_id)),
        ("update", "Patient", str(patient_id)),
        ("delete", "AllergyIntolerance", str(allergy_id)),
    ]
    session_user = await tx.fetchval("SELECT session_user")
    for row in logged:
        assert row["patient_id"] == patient_id  # from `id` for patients, `patient_id` for allergies
        assert row["username"] == session_user
        assert row["user_id"] is None
        assert row["outcome"] == "success"
    # They are ordinary rows of this session's chain.
    first, last = logged[0]["id"], logged[-1]["id"]
    found = await repository.check_chain_range(tx, first, last, None, None)
    assert (found.rows, found.broken) == (4, 0)


async def test_writes_with_the_actor_setting_are_left_to_the_application(tx):
    await tx.execute("SELECT set_config('hims.actor', $1, true)", str(uuid.uuid4()))
    patient_id = await _new_patient(tx)
    await tx.execute("UPDATE patients SET given_name = 'Abena' WHERE id = $1", patient_id)
    await tx.execute("SELECT set_config('hims.actor', 'system:fhir-import', true)")
    await tx.execute("DELETE FROM patients WHERE id = $1", patient_id)
    assert await rows(tx, "channel = 'db'") == []


async def test_one_statement_writes_unlogged_when_its_source_reads_the_actor_setting(tx):
    # The WHEN clause is checked as each row is written: within one statement, hims.actor must be
    # set by something the write itself reads first (here its source), outside any transaction too.
    await tx.fetch(
        "WITH actor AS MATERIALIZED (SELECT set_config('hims.actor', $1::text, true) AS who), "
        "w AS (INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex_at_birth, "
        "identifiers, deceased, active, version) SELECT $2, $3, 'Ama', 'Mensah', '1980-02-03', "
        "'female', '[]', false, true, 1 FROM actor RETURNING id) SELECT w.id FROM w",
        "system:test",
        uuid.uuid4(),
        f"T{uuid.uuid4().hex[:10]}",
    )
    assert await rows(tx, "channel = 'db'") == []


async def test_a_setting_left_empty_by_an_earlier_transaction_counts_as_unset(writer):
    # SET LOCAL leaves the placeholder behind: after the transaction current_setting() is ''.
    async with writer.transaction():
        await writer.execute("SELECT set_config('hims.actor', 'system:seed', true)")
    assert await writer.fetchval("SELECT current_setting('hims.actor', true)") == ""
    transaction = writer.transaction()
    await transaction.start()
    try:
        patient_id = await _new_patient(writer)
        assert [r["patient_id"] for r in await rows(writer, "channel = 'db'")] == [patient_id]
    finally:
        await transaction.rollback()


async def test_every_phi_table_has_the_trigger(tx):
    attached = await tx.fetch(
        "SELECT c.relname, t.tgargs FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = c.relname || '_outside_write' AND c.relname = ANY($1::text[])",
        list(PHI_TABLES),
    )
    assert {r["relname"]: r["tgargs"] for r in attached} == {
        table: f"{resource_type}\x00{column}\x00".encode()
        for table, (resource_type, column) in PHI_TABLES.items()
    }
    # Consultations are partitioned: each partition, present and future, gets the trigger too.
    partitions = await tx.fetchval(
        "SELECT count(*) FROM pg_inherits i JOIN pg_trigger t ON t.tgrelid = i.inhrelid "
        "WHERE i.inhparent = 'consultations'::regclass AND t.tgname = 'consultations_outside_write'"
    )
    assert partitions == await tx.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'consultations'::regclass"
    )


@pytest.mark.parametrize(
    ("table", "resource_type", "column"),
    [
        ("patients; DROP TABLE patients", "Patient", "id"),
        ("patients", "Patient')--", "id"),
        ("patients", "Patient", 'id"x'),
    ],
)
def test_the_helper_refuses_names_that_are_not_plain(table, resource_type, column):
    with pytest.raises(ValueError, match="not a"):
        outside_write_trigger_ddl(table, resource_type, column)


async def test_the_applications_own_writes_are_not_logged_twice(client, settings, database_url):
    """A registration through the API, then an edit from psql: the API's write has its own log row
    (channel rest), the psql edit one from the database (channel db), nothing else."""
    from tests.patients.factories import make_patient

    patient = await make_patient(client, settings)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE patients SET city = 'Kumasi' WHERE id = $1::uuid", patient["id"])
        logged = await conn.fetch(
            "SELECT action, channel FROM phi_access_log WHERE patient_id = $1::uuid ORDER BY id",
            patient["id"],
        )
    finally:
        await conn.close()
    assert [(r["action"], r["channel"]) for r in logged] == [("create", "rest"), ("update", "db")]
