"""Read, vread, create, update, delete, history, conditional interactions, errors as OperationOutcome."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from httpx import AsyncClient

from hims.fhir.search import criteria_key
from tests.fhir.conftest import create, patient


async def test_create_read_update_delete(fhir: AsyncClient) -> None:
    response = await fhir.post("/Patient", json=patient())
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["etag"] == 'W/"1"'
    body = response.json()
    pid = body["id"]
    assert response.headers["location"].endswith(f"/fhir/R4/Patient/{pid}/_history/1")
    assert body["meta"]["versionId"] == "1"

    read = await fhir.get(f"/Patient/{pid}")
    assert read.status_code == 200
    assert read.json()["name"][0]["family"] == "Okafor"

    updated = {**read.json(), "gender": "other"}
    stale = await fhir.put(f"/Patient/{pid}", json=updated, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    ok = await fhir.put(f"/Patient/{pid}", json=updated, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == 'W/"2"'

    v1 = await fhir.get(f"/Patient/{pid}/_history/1")
    assert v1.json()["gender"] == "female"
    history = await fhir.get(f"/Patient/{pid}/_history")
    assert [e["response"]["etag"] for e in history.json()["entry"]] == ['W/"2"', 'W/"1"']

    deleted = await fhir.delete(f"/Patient/{pid}")
    assert deleted.status_code == 204
    gone = await fhir.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"


async def test_conditional_create_and_update(fhir: AsyncClient) -> None:
    first = await create(fhir, patient())
    again = await fhir.post("/Patient", json=patient(), headers={"If-None-Exist": "identifier=urn:mrn|MRN-1"})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    put = await fhir.put("/Patient?identifier=urn:mrn|MRN-1", json=patient(gender="male"))
    assert put.status_code == 200
    assert put.json()["id"] == first["id"]
    assert put.json()["meta"]["versionId"] == "2"
    created = await fhir.put(
        "/Patient?identifier=urn:mrn|MRN-2",
        json=patient(family="Mensah", given="Kojo", identifier=[{"system": "urn:mrn", "value": "MRN-2"}]),
    )
    assert created.status_code == 201


async def test_concurrent_conditional_creates_make_one_resource(fhir: AsyncClient) -> None:
    """Two clients registering the same person at the same moment (If-None-Exist) get one record."""
    body = patient(identifier=[{"system": "urn:mrn", "value": "RACE-1"}])
    condition = {"If-None-Exist": "identifier=urn:mrn|RACE-1"}
    answers = await asyncio.gather(*(fhir.post("/Patient", json=body, headers=condition) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    puts = await asyncio.gather(
        *(
            fhir.put(
                "/Patient?identifier=urn:mrn|RACE-2",
                json=patient(
                    family="Mensah", given="Kojo", identifier=[{"system": "urn:mrn", "value": "RACE-2"}]
                ),
            )
            for _ in range(6)
        )
    )
    assert sorted(p.status_code for p in puts) == [200] * 5 + [201]
    found = await fhir.get("/Patient", params={"identifier": "urn:mrn|RACE-2"})
    assert len(found.json()["entry"]) == 1


def _organization(value: str) -> dict[str, Any]:
    """An Organization named ``value`` with identifier urn:org|value."""
    identifier = [{"system": "urn:org", "value": value}]
    return {"resourceType": "Organization", "name": value, "identifier": identifier}


def _conditional_organization(value: str) -> dict[str, Any]:
    """A transaction creating `_organization` ``value`` unless it exists."""
    request = {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier=urn:org|{value}"}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _organization(value), "request": request}],
    }


async def test_a_bundle_whose_criteria_match_does_not_queue_behind_other_creators(
    fhir: AsyncClient, database_url: str
) -> None:
    """Conditional criteria that match an existing resource create nothing, so the bundle takes no
    lock on them and does not wait for a concurrent bundle holding it (one that found nothing when
    it began, e.g. another Synthea file naming the same Organization). Criteria that match nothing
    still wait: the first creator's commit decides."""
    ward = await create(fhir, _organization("W4"))
    other_bundle = await asyncpg.connect(database_url)
    try:
        async with other_bundle.transaction():
            for value in ("W4", "W5"):
                key = criteria_key("Organization", f"identifier=urn:org|{value}")
                await other_bundle.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            matched = await asyncio.wait_for(fhir.post("", json=_conditional_organization("W4")), timeout=10)
            assert matched.status_code == 200, matched.text
            response = matched.json()["entry"][0]["response"]
            assert (response["status"], response["location"].split("/")[1]) == ("200 OK", ward["id"])
            unmatched = asyncio.create_task(fhir.post("", json=_conditional_organization("W5")))
            await asyncio.sleep(0.5)
            assert not unmatched.done()  # waits for the other bundle to commit or roll back
        created = await asyncio.wait_for(unmatched, timeout=10)
    finally:
        await other_bundle.close()
    assert created.json()["entry"][0]["response"]["status"] == "201 Created"


async def test_bad_input_is_operation_outcome(fhir: AsyncClient) -> None:
    bad_json = await fhir.post("/Patient", content=b"{not json")
    assert bad_json.status_code == 400
    assert bad_json.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_json"
    wrong_type = await fhir.post("/Patient", json={"resourceType": "Observation", "status": "final"})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["issue"][0]["details"]["coding"][0]["code"] == "resource_type_mismatch"
    unknown = await fhir.get("/Spaceship/1")
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    bad_ref = await fhir.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/nope"},
        },
    )
    assert bad_ref.status_code == 422
    assert bad_ref.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_reference"
    bad_date = await fhir.post("/Patient", json=patient(birthDate="1980-13-45"))
    assert bad_date.status_code == 422
    assert bad_date.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_date"
    missing = await fhir.get("/Patient/does-not-exist")
    assert missing.status_code == 404
    no_auth = await fhir.get("/Patient", headers={"Authorization": ""})
    assert no_auth.status_code == 401
    assert no_auth.json()["resourceType"] == "OperationOutcome"


async def test_oversized_and_odd_values_never_500(fhir: AsyncClient) -> None:
    huge = "ü" * 5000
    too_long = await fhir.post("/Patient", json=patient(family=huge))
    assert too_long.status_code == 422, too_long.text
    assert {i["details"]["coding"][0]["code"] for i in too_long.json()["issue"]} >= {"too_long"}
    response = await fhir.post(
        "/Patient",
        json=patient(
            identifier=[{"system": "urn:x", "value": huge}],
            managingOrganization={"reference": "http://elsewhere.example/fhir/Organization/" + "x" * 300},
        ),
    )
    assert response.status_code == 201, response.text
    assert {"system": "urn:x", "value": huge} in response.json()["identifier"]
    found = await fhir.get("/Patient", params={"_id": response.json()["id"]})
    assert len(found.json()["entry"]) == 1
    assert (await fhir.get("/Patient", params={"family": "üüü"})).json()["entry"] == []
    twice = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "id": "dup"},
                "request": {"method": "PUT", "url": "Patient/dup"},
            }
        ]
        * 2,
    }
    dup = await fhir.post("", json=twice)
    assert dup.status_code == 400
    assert dup.json()["resourceType"] == "OperationOutcome"
    quantity = await fhir.get("/Observation", params={"value-quantity": "1e999999"})
    assert quantity.status_code in (200, 400)


async def test_put_recreates_a_deleted_resource_with_a_new_version(fhir: AsyncClient) -> None:
    first = await fhir.put("/Patient/again", json={**patient(), "id": "again"})
    assert first.status_code == 201
    assert (await fhir.delete("/Patient/again")).status_code == 204
    assert (await fhir.delete("/Patient/again")).status_code == 204
    again = await fhir.put("/Patient/again", json={**patient(), "id": "again"})
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"
    history = (await fhir.get("/Patient/again/_history")).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "DELETE", "PUT"]
    assert (await fhir.get("/Patient/again/_history/2")).status_code == 410


# ---------------------------------------------------------------- concurrent writes of one resource
# An update, patch or delete reads, then writes in one statement over the version it read, with no
# lock (service._optimistic); one that loses the race tries again under the row lock. In these
# tests every request reads version 1 before any writes, so all but one lose their first try.

RACERS = 8


async def test_concurrent_patches_of_one_patient_lose_no_change(fhir: AsyncClient, database_url: str) -> None:
    """Eight clients each add an identifier at the same moment: every one of them is kept, in the
    FHIR resource, its history and the patients row, and each write has its PHI log row."""
    pid = (await create(fhir, patient()))["id"]
    patch_type = {"Content-Type": "application/json-patch+json"}

    def add(n: int) -> list[dict[str, Any]]:
        return [{"op": "add", "path": "/identifier/-", "value": {"system": "urn:race", "value": str(n)}}]

    answers = await asyncio.gather(
        *(fhir.patch(f"/Patient/{pid}", json=add(n), headers=patch_type) for n in range(RACERS))
    )
    assert [a.status_code for a in answers] == [200] * RACERS, [a.text for a in answers]
    assert sorted(a.headers["etag"] for a in answers) == sorted(f'W/"{v}"' for v in range(2, RACERS + 2))
    final = (await fhir.get(f"/Patient/{pid}")).json()
    raced = sorted(i["value"] for i in final["identifier"] if i.get("system") == "urn:race")
    assert raced == [str(n) for n in range(RACERS)]
    history = (await fhir.get(f"/Patient/{pid}/_history", params={"_count": 50})).json()
    assert len(history["entry"]) == RACERS + 1
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchval("SELECT identifiers::text FROM patients WHERE id = $1::uuid", pid)
        updates = await conn.fetchval(
            "SELECT count(*) FROM phi_access_log WHERE resource_type = 'Patient' AND resource_id = $1 "
            "AND action = 'update'",
            pid,
        )
    finally:
        await conn.close()
    assert all(f'"value": "{n}"' in row for n in range(RACERS))
    assert updates == RACERS


async def test_concurrent_updates_naming_one_version_let_exactly_one_through(fhir: AsyncClient) -> None:
    stored = await create(fhir, patient())
    body = {**stored, "gender": "other"}
    stale_after_one = {"If-Match": 'W/"1"'}
    answers = await asyncio.gather(
        *(fhir.put(f"/Patient/{stored['id']}", json=body, headers=stale_after_one) for _ in range(RACERS))
    )
    assert sorted(a.status_code for a in answers) == [200] + [412] * (RACERS - 1)
    refused = next(a for a in answers if a.status_code == 412).json()
    assert refused["resourceType"] == "OperationOutcome"
    assert (await fhir.get(f"/Patient/{stored['id']}")).json()["meta"]["versionId"] == "2"


async def test_concurrent_updates_and_deletes_each_get_a_version_of_their_own(fhir: AsyncClient) -> None:
    stored = await create(fhir, patient())
    puts = await asyncio.gather(
        *(
            fhir.put(f"/Patient/{stored['id']}", json={**stored, "birthDate": f"19{50 + n}-01-01"})
            for n in range(RACERS)
        )
    )
    assert [p.status_code for p in puts] == [200] * RACERS, [p.text for p in puts]
    assert len({p.headers["etag"] for p in puts}) == RACERS
    final = (await fhir.get(f"/Patient/{stored['id']}")).json()
    last = max(puts, key=lambda p: int(p.json()["meta"]["versionId"])).json()
    assert final["birthDate"] == last["birthDate"]
    deletes = await asyncio.gather(*(fhir.delete(f"/Patient/{stored['id']}") for _ in range(RACERS)))
    assert [d.status_code for d in deletes] == [204] * RACERS
    assert [d.headers.get("etag") for d in deletes if d.headers.get("etag")] == [f'W/"{RACERS + 2}"']
    history = (await fhir.get(f"/Patient/{stored['id']}/_history", params={"_count": 50})).json()
    assert [e["request"]["method"] for e in history["entry"]].count("DELETE") == 1
