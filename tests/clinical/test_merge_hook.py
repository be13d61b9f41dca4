from __future__ import annotations

from hims.clinical import service as clinical
from hims.consultations import service as consultations
from tests.clinical.factories import ACTOR, make_clinical_history, make_patient
from tests.support import count_rows


async def test_repoint_patient_moves_every_record(db, partitions, sql):
    async with db.driver_transaction() as conn:
        loser = await make_patient(conn, family_name="Dupe")
        survivor = await make_patient(conn, family_name="Keep")
        await make_clinical_history(conn, patient_id=loser["id"], count=3)
    async with db.driver_transaction() as conn:
        moved = await consultations.move_patient_records(conn, ACTOR, loser["id"], survivor["id"])
        moved += await clinical.move_patient_records(conn, ACTOR, loser["id"], survivor["id"])
    assert moved == 3 * 6
    for table in ("consultations", "observations", "conditions", "allergies", "prescriptions", "lab_orders"):
        left = await sql.fetchval(f"SELECT count(*) FROM {table} WHERE patient_id = $1", loser["id"])
        assert left == 0, table
    assert await count_rows(partitions, "consultations") == 3
    merged = await sql.fetch("SELECT resource_type, patient_id FROM phi_access_log WHERE action = 'merge'")
    assert len(merged) == 3 * 6
    assert {r["patient_id"] for r in merged} == {survivor["id"]}


async def test_patient_merge_moves_clinical_records(client, settings, db, partitions, sql):
    from tests.clinical.conftest import auth_headers

    async with db.driver_transaction() as conn:
        loser = await make_patient(conn, family_name="Dupe")
        survivor = await make_patient(conn, family_name="Keep")
        await make_clinical_history(conn, patient_id=loser["id"], count=2)
    response = await client.post(
        f"/api/v1/patients/{loser['id']}/merge",
        json={"into": str(survivor["id"])},
        headers=auth_headers(settings, "receptionist"),
    )
    assert response.status_code < 300, response.text
    for table in ("consultations", "observations", "conditions", "allergies", "prescriptions", "lab_orders"):
        assert (
            await sql.fetchval(f"SELECT count(*) FROM {table} WHERE patient_id = $1", survivor["id"]) == 2
        ), table
