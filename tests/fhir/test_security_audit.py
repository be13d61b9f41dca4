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
    assert rows[0]["resource_id"] == f"Patient/{pid}"
    assert {r["channel"] for r in rows} == {"fhir"}
    assert rows[0]["username"].startswith("test-")  # the account name (from identity), not the token


async def test_client_chosen_ids_are_logged_by_reference(fhir: AsyncClient, database_url: str) -> None:
    await fhir.put("/Patient/example-1", json={**patient(), "id": "example-1"})
    rows = await _log(database_url)
    assert rows[0]["patient_id"] is None
    assert rows[0]["resource_id"] == "Patient/example-1"


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
