from __future__ import annotations

import uuid

import asyncpg

from hims.patients import repository
from hims.patients.mrn import format_mrn
from tests.patients.factories import auth_headers, make_patient
from tests.support import phi_rows


async def test_prefix_search_ignores_case_and_accents_and_returns_summaries(client, settings, database_url):
    headers = auth_headers(settings, "receptionist")
    nunez = await make_patient(
        client, settings, family_name="Núñez", given_name="José", phone="+44 20 7946 0001"
    )
    await make_patient(client, settings, family_name="Nunes", given_name="Ana")
    await make_patient(client, settings, family_name="O'Brien", given_name="Siobhán")

    found = await client.get("/api/v1/patients", params={"family": "NUN"}, headers=headers)
    assert found.status_code == 200
    names = [p["display_name"] for p in found.json()["items"]]
    assert names == ["Nunes, Ana", "Núñez, José"]
    assert set(found.json()["items"][0]) == {
        "id",
        "mrn",
        "display_name",
        "date_of_birth",
        "sex_at_birth",
        "score",
    }

    assert [
        p["display_name"]
        for p in (
            await client.get("/api/v1/patients", params={"family": "nunez", "given": "jos"}, headers=headers)
        ).json()["items"]
    ] == ["Núñez, José"]
    assert (await client.get("/api/v1/patients", params={"family": "obri"}, headers=headers)).json()["items"][
        0
    ]["display_name"] == "O'Brien, Siobhán"
    by_q = await client.get("/api/v1/patients", params={"q": "jose nunez"}, headers=headers)
    assert [p["id"] for p in by_q.json()["items"]] == [nunez["id"]]
    by_mrn = await client.get("/api/v1/patients", params={"mrn": nunez["mrn"]}, headers=headers)
    assert [p["id"] for p in by_mrn.json()["items"]] == [nunez["id"]]
    by_digits = await client.get("/api/v1/patients", params={"phone": "+442079460001"}, headers=headers)
    assert [p["id"] for p in by_digits.json()["items"]] == [nunez["id"]]
    by_dob = await client.get(
        "/api/v1/patients", params={"birth_date": nunez["date_of_birth"], "family": "n"}, headers=headers
    )
    assert {p["id"] for p in by_dob.json()["items"]} >= {nunez["id"]}

    # One "search" PHI row per patient returned.
    rows = await phi_rows(database_url, action="search", patient_id=uuid.UUID(nunez["id"]))
    assert len(rows) >= 5


async def test_invalid_mrn_is_422(client, settings) -> None:
    good = format_mrn(123456)
    wrong = good[:-1] + str((int(good[-1]) + 1) % 10)
    response = await client.get(
        "/api/v1/patients", params={"mrn": wrong}, headers=auth_headers(settings, "receptionist")
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "mrn"


async def test_keyset_paging_walks_every_match_once(client, settings) -> None:
    headers = auth_headers(settings, "receptionist")
    ids = {
        (await make_patient(client, settings, family_name="Pager", given_name=f"G{i:02d}"))["id"]
        for i in range(7)
    }
    seen: list[str] = []
    cursor = None
    while True:
        params = {"family": "pager", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/patients", params=params, headers=headers)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 7
    assert set(seen) == ids
    bad = await client.get("/api/v1/patients", params={"cursor": "nonsense"}, headers=headers)
    assert bad.status_code == 422


async def test_fuzzy_search_ranks_similar_and_phonetic_names(client, settings) -> None:
    headers = auth_headers(settings, "receptionist")
    smith = await make_patient(client, settings, family_name="Smith", given_name="John")
    smyth = await make_patient(client, settings, family_name="Smyth", given_name="Jon")
    await make_patient(client, settings, family_name="Zhang", given_name="Wei")
    response = await client.get(
        "/api/v1/patients", params={"family": "Smithe", "given": "john", "fuzzy": "true"}, headers=headers
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [p["id"] for p in items][:2] == [smith["id"], smyth["id"]]
    assert items[0]["score"] > items[1]["score"] > 0
    assert all(p["display_name"] != "Zhang, Wei" for p in items)
    for q in ("jon smyth", "Smyth, Jon"):
        typed = await client.get("/api/v1/patients", params={"q": q, "fuzzy": "true"}, headers=headers)
        assert typed.json()["items"][0]["id"] == smyth["id"], q
    single = await client.get("/api/v1/patients", params={"q": "smithe", "fuzzy": "true"}, headers=headers)
    assert {p["id"] for p in single.json()["items"][:2]} == {smith["id"], smyth["id"]}


async def test_fuzzy_search_without_extension_is_a_clear_problem(client, settings, database_url) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.execute("DROP EXTENSION fuzzystrmatch")
    try:
        response = await client.get(
            "/api/v1/patients",
            params={"q": "smith", "fuzzy": "true"},
            headers=auth_headers(settings, "receptionist"),
        )
    finally:
        await conn.execute("CREATE EXTENSION fuzzystrmatch")
        await conn.close()
    assert response.status_code == 501
    assert response.json()["code"] == "extension_missing"
    assert response.json()["extension"] == "fuzzystrmatch"


async def test_prefix_search_uses_the_name_index(database_url) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex_at_birth, identifiers,
                                  deceased, active, version)
            SELECT gen_random_uuid(), lpad(g::text, 10, '0'),
                   (ARRAY['Ana','José','Wei','Amara','John'])[1 + g % 5],
                   (ARRAY['Núñez','Smith','Okafor','Zhang','Müller','Brown','Adeyemi'])[1 + g % 7]
                       || (g % 997)::text,
                   DATE '1950-01-01' + (g % 20000), 'female', '[]', false, true, 1
            FROM generate_series(1, 6000) AS g
            """
        )
        await conn.execute("ANALYZE patients")
        for criteria in (
            repository.SearchFilter(family_key="muller12"),
            repository.SearchFilter(family_key="nunez4", given_key="jo"),
        ):
            plan = await _plan(conn, criteria)
            assert "ix_patients_family_given_key" in plan, plan
            assert "Seq Scan" not in plan, plan
        plan = await _plan(conn, repository.SearchFilter(given_key="wei"))
        assert "ix_patients_given_family_key" in plan, plan
        assert "Seq Scan" not in plan, plan
    finally:
        await conn.close()


async def _plan(conn, criteria) -> str:
    sql, values = repository.search_sql(criteria, limit=21, after=None, first=1)
    return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *values))


async def test_given_name_search_pages_in_given_name_order(client, settings) -> None:
    headers = auth_headers(settings, "receptionist")
    for family in ("Zed", "Alpha", "Mid", "Beta", "Omega"):
        await make_patient(client, settings, family_name=family, given_name="Kwame")
    await make_patient(client, settings, family_name="Aaron", given_name="Kwabena")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"given": "kw", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/patients", params=params, headers=headers)).json()
        seen += [p["display_name"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [
        "Aaron, Kwabena",
        "Alpha, Kwame",
        "Beta, Kwame",
        "Mid, Kwame",
        "Omega, Kwame",
        "Zed, Kwame",
    ]
