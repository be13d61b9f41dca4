from __future__ import annotations

import asyncpg

from generate import generate


async def test_generate_copies_a_consistent_dataset(database_url):
    report = await generate(database_url, patients=300, consultations=900, years=3)
    assert report.rows["patients"] == 300
    assert report.rows["consultations"] == 900
    assert report.rows["observations"] == 1800
    sql = await asyncpg.connect(database_url)
    try:
        assert await sql.fetchval("SELECT count(*) FROM patients") == 300
        assert await sql.fetchval("SELECT count(DISTINCT mrn) FROM patients") == 300
        assert await sql.fetchval("SELECT count(*) FROM consultations") == 900
        # Spread over several yearly partitions (ensured first), every observation on a real visit.
        assert await sql.fetchval("SELECT count(DISTINCT tableoid) FROM consultations") >= 2
        orphans = await sql.fetchval(
            "SELECT count(*) FROM observations o "
            "LEFT JOIN consultations c ON c.id = o.consultation_id WHERE c.id IS NULL"
        )
        assert orphans == 0
    finally:
        await sql.close()
