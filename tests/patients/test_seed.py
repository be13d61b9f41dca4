from __future__ import annotations

from hims.core.db import Database
from hims.seed import SEEDERS, SeedReport
from hims.seeders import load_seeders
from tests.support import count_rows as count


async def test_seed_is_believable_and_idempotent(db: Database, settings, database_url) -> None:
    load_seeders()
    mine = [(n, s) for n, s in SEEDERS if n in ("practitioners", "patients", "appointments")]
    assert [n for n, _ in mine][-1] == "appointments"  # needs both patients and practitioners

    first = SeedReport()
    for _name, seeder in mine:
        async with db.transaction() as session:
            await seeder(session, settings, first)
    assert first.created == {
        "facilities": 1,
        "departments": 4,
        "practitioners": 3,
        "patients": 300,
        "appointments": 48,
    }
    assert await count(database_url, "patients") == 300
    assert await count(database_url, "appointments") == 48

    second = SeedReport()
    for _name, seeder in mine:
        async with db.transaction() as session:
            await seeder(session, settings, second)
    assert set(second.created.values()) == {0}
    assert await count(database_url, "patients") == 300
