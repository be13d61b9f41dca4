"""Bulk Data $export: kick-off, status polling, manifest, authenticated NDJSON download."""

from __future__ import annotations

import asyncio

import orjson
from httpx import AsyncClient

from tests.fhir.conftest import create, patient


async def _wait_manifest(fhir: AsyncClient, status_url: str) -> dict:
    for _ in range(200):
        response = await fhir.get(status_url)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202
        assert "X-Progress" in response.headers
        await asyncio.sleep(0.02)
    raise AssertionError("export did not finish")


async def test_system_and_patient_export(fhir: AsyncClient) -> None:
    p = await create(fhir, patient())
    await create(
        fhir,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{p['id']}"},
        },
    )
    await create(fhir, {"resourceType": "Organization", "name": "Clinic"})
    needs_async = await fhir.get("/$export")
    assert needs_async.status_code == 400
    kick = await fhir.get("/$export", headers={"Prefer": "respond-async"})
    assert kick.status_code == 202
    status_url = kick.headers["content-location"].split("/fhir/R4", 1)[1]
    manifest = await _wait_manifest(fhir, status_url)
    assert manifest["requiresAccessToken"] is True
    assert {o["type"]: o["count"] for o in manifest["output"]} == {
        "Observation": 1,
        "Organization": 1,
        "Patient": 1,
    }
    url = next(o["url"] for o in manifest["output"] if o["type"] == "Patient").split("/fhir/R4", 1)[1]
    download = await fhir.get(url)
    assert download.status_code == 200
    lines = download.content.decode().strip().split("\n")
    assert orjson.loads(lines[0])["id"] == p["id"]
    anonymous = await fhir.get(url, headers={"Authorization": ""})
    assert anonymous.status_code == 401

    kick = await fhir.get(
        "/Patient/$export", params={"_type": "Patient,Observation"}, headers={"Prefer": "respond-async"}
    )
    manifest = await _wait_manifest(fhir, kick.headers["content-location"].split("/fhir/R4", 1)[1])
    assert sorted(o["type"] for o in manifest["output"]) == ["Observation", "Patient"]

    group = await create(
        fhir,
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p['id']}"}}],
        },
    )
    kick = await fhir.get(
        f"/Group/{group['id']}/$export", params={"_since": "2000-01-01"}, headers={"Prefer": "respond-async"}
    )
    manifest = await _wait_manifest(fhir, kick.headers["content-location"].split("/fhir/R4", 1)[1])
    assert sorted(o["type"] for o in manifest["output"]) == ["Observation", "Patient"]
    bad = await fhir.get("/$export", params={"_type": "Nope"}, headers={"Prefer": "respond-async"})
    assert bad.status_code == 400
