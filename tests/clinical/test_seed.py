from __future__ import annotations

from hims.clinical.seed import seed_clinical_history
from hims.seed import SeedReport
from tests.clinical.factories import make_patient
from tests.support import count_rows, phi_rows

CLINICAL = ("consultations", "observations", "conditions", "prescriptions", "lab_orders")


async def test_seeder_gives_only_demo_patients_a_history_once(db, settings, partitions, database_url, sql):
    async with db.driver_transaction() as conn:
        demo = await make_patient(conn, family_name="Mensah")
        await make_patient(conn, family_name="Larsen")
    report = SeedReport(demo_patients=[demo["id"]])
    async with db.transaction() as session:
        await seed_clinical_history(session, settings, report)
    assert report.created["clinical records"] > 0
    for table in CLINICAL:
        assert await count_rows(database_url, table) > 0, table
        owners = await sql.fetch(f"SELECT DISTINCT patient_id FROM {table}")
        assert [r["patient_id"] for r in owners] == [demo["id"]], table  # never the real patient
    assert {r["channel"] for r in await phi_rows(database_url)} == {"cli"}
    before = await count_rows(database_url, "consultations")
    async with db.transaction() as session:
        await seed_clinical_history(session, settings, SeedReport(demo_patients=[demo["id"]]))
    assert await count_rows(database_url, "consultations") == before
