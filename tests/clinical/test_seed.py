from __future__ import annotations

from hims.clinical.seed import seed_clinical_history
from hims.seed import SeedReport
from tests.clinical.factories import make_patient
from tests.support import count_rows, phi_rows


async def test_seeder_gives_patients_a_history_once(db, settings, partitions, database_url):
    async with db.transaction() as session:
        for name in ("Mensah", "Larsen"):
            await make_patient(session, family_name=name)
    report = SeedReport()
    async with db.transaction() as session:
        await seed_clinical_history(session, settings, report)
    assert report.created["clinical records"] > 0
    for table in ("consultations", "observations", "conditions", "prescriptions", "lab_orders"):
        assert await count_rows(database_url, table) > 0, table
    assert {r["channel"] for r in await phi_rows(database_url)} == {"cli"}
    before = await count_rows(database_url, "consultations")
    async with db.transaction() as session:
        await seed_clinical_history(session, settings, SeedReport())
    assert await count_rows(database_url, "consultations") == before
