"""Auth (RBAC + SMART scopes) and the PHI access log for FHIR reads, writes and searches."""

from __future__ import annotations

import asyncpg
from httpx import AsyncClient

from hims.settings import Settings
from tests.fhir.conftest import auth, create, patient


async def _log(database_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch("SELECT * FROM phi_access_log ORDER BY id"))
    finally:
        await conn.close()


async def test_every_interaction_writes_the_phi_access_log(fhir: AsyncClient, database_url: str) -> None:
    body = await create(fhir, patient())
    pid = body["id"]
    await fhir.get(f"/Patient/{pid}")
    await fhir.get("/Patient", params={"name": "okafor"})
    await fhir.delete(f"/Patient/{pid}")
    rows = await _log(database_url)
    assert [r["action"] for r in rows] == ["create", "read", "search", "delete"]
    assert all(str(r["patient_id"]) == pid for r in rows)
    assert {(r["resource_type"], r["resource_id"]) for r in rows} == {("Patient", pid)}
    assert {r["channel"] for r in rows} == {"fhir"}
    assert rows[0]["username"].startswith("test-")  # the account name (from identity), not the token


async def test_client_chosen_ids_are_logged_by_reference(fhir: AsyncClient, database_url: str) -> None:
    await fhir.put("/Patient/example-1", json={**patient(), "id": "example-1"})
    rows = await _log(database_url)
    assert rows[0]["patient_id"] is None
    assert (rows[0]["resource_type"], rows[0]["resource_id"]) == ("Patient", "example-1")


async def test_roles_and_scopes_limit_access(fhir: AsyncClient, settings: Settings) -> None:
    body = await create(fhir, patient())
    receptionist = auth(settings, "receptionist")  # no fhir:read in the permission matrix
    denied = await fhir.get(f"/Patient/{body['id']}", headers=receptionist)
    assert denied.status_code == 403
    assert denied.json()["resourceType"] == "OperationOutcome"
    nurse = auth(settings, "nurse")  # fhir:read but not fhir:write
    assert (await fhir.get(f"/Patient/{body['id']}", headers=nurse)).status_code == 200
    assert (await fhir.post("/Patient", json=patient(), headers=nurse)).status_code == 403
    observations_only = auth(settings, "physician", scope="user/Observation.read")
    assert (await fhir.get(f"/Patient/{body['id']}", headers=observations_only)).status_code == 403
    assert (await fhir.get("/Observation", headers=observations_only)).status_code == 200
    read_all = auth(settings, "physician", scope="patient/*.read")
    assert (await fhir.get(f"/Patient/{body['id']}", headers=read_all)).status_code == 200
    assert (await fhir.post("/Patient", json=patient(), headers=read_all)).status_code == 403


async def test_a_read_logs_the_patient_as_writes_do(fhir: AsyncClient, database_url: str) -> None:
    """A read's log row is written by the reading statement itself (SQL), a write's by Python:
    both must name the same patient for every id shape, and a 404 or 410 read logs nothing."""
    ids = ["example-1", "5B0A2C4E-1D3F-4A6B-8C9D-0E1F2A3B4C5D", "5b0a2c4e1d3f4a6b8c9d0e1f2a3b4c5e"]
    for id_ in ids:
        assert (await fhir.put(f"/Patient/{id_}", json={**patient(), "id": id_})).status_code == 201
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{id_}"},
        }
        obs = await create(fhir, observation)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}],
        }
        response = await fhir.post("", json=bundle)
        in_bundle = response.json()["entry"][0]["response"]["location"].split("/")[1]
        for path in (f"/Patient/{id_}", f"/Observation/{obs['id']}", f"/Observation/{in_bundle}"):
            assert (await fhir.get(path)).status_code == 200
    rows = await _log(database_url)
    by_action: dict[str, dict[str, object]] = {"create": {}, "read": {}}
    for row in rows:
        by_action[row["action"]][f"{row['resource_type']}/{row['resource_id']}"] = row["patient_id"]
    # Reads and single writes log in SQL, bundle entries in Python: the same patient every time.
    assert by_action["read"] == by_action["create"]
    assert by_action["read"]["Patient/example-1"] is None
    assert str(by_action["read"][f"Patient/{ids[1]}"]) == ids[1].lower()
    assert len(by_action["read"]) == 9
    await fhir.delete(f"/Patient/{ids[0]}")
    before = len(await _log(database_url))
    assert (await fhir.get(f"/Patient/{ids[0]}")).status_code == 410
    assert (await fhir.get("/Patient/never-was")).status_code == 404
    assert len(await _log(database_url)) == before


async def test_denied_attempts_name_the_resource_and_its_patient(
    fhir: AsyncClient, settings: Settings, database_url: str
) -> None:
    """Refused by role or by the token's scopes, on an instance or in a search: one row, outcome
    denied, with the patient the attempt was about (for an Observation, read from the store)."""
    pid = (await create(fhir, patient()))["id"]
    oid = (
        await create(
            fhir,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "pulse"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
    )["id"]
    before = len(await _log(database_url))
    receptionist = auth(settings, "receptionist")  # no fhir:read
    nurse = auth(settings, "nurse")  # fhir:read, not fhir:write
    observations_only = auth(settings, "physician", scope="user/Observation.read")
    attempts = [
        fhir.get(f"/Patient/{pid}", headers=receptionist),
        fhir.get(f"/Observation/{oid}", headers=receptionist),
        fhir.get("/Observation", params={"patient": pid}, headers=receptionist),
        fhir.get(f"/Patient/{pid}/$everything", headers=receptionist),
        fhir.put(f"/Observation/{oid}", json={"resourceType": "Observation"}, headers=nurse),
        fhir.get(f"/Patient/{pid}", headers=observations_only),
    ]
    for attempt in attempts:
        assert (await attempt).status_code == 403
    denied = (await _log(database_url))[before:]
    assert [
        (r["action"], r["resource_type"], r["resource_id"], str(r["patient_id"]), r["outcome"])
        for r in denied
    ] == [
        ("read", "Patient", pid, pid, "denied"),
        ("read", "Observation", oid, pid, "denied"),
        ("search", "Observation", None, pid, "denied"),
        ("read", "Patient", pid, pid, "denied"),
        ("update", "Observation", oid, pid, "denied"),
        ("read", "Patient", pid, pid, "denied"),
    ]
    assert {r["channel"] for r in denied} == {"fhir"}
