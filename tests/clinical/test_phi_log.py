"""Every clinical/consultation route writes the PHI access log; failed writes write nothing."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from hims.clinical import service as clinical
from hims.clinical.schemas import AllergyCreate
from hims.core.security import Actor
from tests.support import count_rows, phi_rows

PATIENT_PREFIXES = ("/api/v1/patients/{patient_id}/", "/api/v1/consultations")
OURS = ("consultations", "clinical")


def patient_data_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every patient-data route of the consultations and clinical routers.

    Read from the OpenAPI document: it lists every route whatever the router nesting.
    """
    found = set()
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if path.startswith(PATIENT_PREFIXES) and set(operation.get("tags", [])) & set(OURS):
                found.add((method.upper(), path))
    return found


async def _setup(client: AsyncClient, h: dict[str, str], pid: uuid.UUID) -> dict[str, str]:
    p = f"/api/v1/patients/{pid}"

    async def post(url: str, body: dict | None = None) -> dict:
        response = await client.post(url, json=body or {}, headers=h)
        assert response.status_code in (200, 201), response.text
        return response.json()

    ctx = {"patient_id": str(pid)}
    ctx["consultation_id"] = (await post(f"{p}/consultations"))["id"]
    ctx["signed_id"] = (await post(f"{p}/consultations"))["id"]
    await post(f"/api/v1/consultations/{ctx['signed_id']}/sign")
    ctx["to_sign_id"] = (await post(f"{p}/consultations"))["id"]
    ctx["condition_id"] = (await post(f"{p}/conditions", {"code": "I10"}))["id"]
    ctx["allergy_id"] = (await post(f"{p}/allergies", {"substance": "Latex", "severity": "mild"}))["id"]
    ctx["prescription_id"] = (
        await post(f"{p}/prescriptions", {"drug_name": "Metformin", "dose_value": 500, "dose_unit": "mg"})
    )["id"]
    for name in ("order_id", "collect_id", "result_id", "cancel_id"):
        ctx[name] = (await post(f"{p}/lab-orders", {"code": "2345-7", "display": "Glucose"}))["id"]
    return ctx


#: (method, path) → (concrete url template, JSON body). The test fails when a route is missing here.
CALLS = {
    ("POST", "/api/v1/patients/{patient_id}/consultations"): (
        "/api/v1/patients/{patient_id}/consultations",
        {},
    ),
    ("GET", "/api/v1/patients/{patient_id}/consultations"): (
        "/api/v1/patients/{patient_id}/consultations",
        None,
    ),
    ("GET", "/api/v1/consultations/{consultation_id}"): ("/api/v1/consultations/{signed_id}", None),
    ("PATCH", "/api/v1/consultations/{consultation_id}"): (
        "/api/v1/consultations/{consultation_id}",
        {"plan": "x"},
    ),
    ("POST", "/api/v1/consultations/{consultation_id}/finish"): (
        "/api/v1/consultations/{consultation_id}/finish",
        {},
    ),
    ("POST", "/api/v1/consultations/{consultation_id}/sign"): ("/api/v1/consultations/{to_sign_id}/sign", {}),
    ("POST", "/api/v1/consultations/{consultation_id}/amendments"): (
        "/api/v1/consultations/{signed_id}/amendments",
        {"text": "t", "reason": "r"},
    ),
    ("GET", "/api/v1/patients/{patient_id}/chart"): ("/api/v1/patients/{patient_id}/chart", None),
    ("POST", "/api/v1/patients/{patient_id}/observations"): (
        "/api/v1/patients/{patient_id}/observations",
        {"heart_rate": 70},
    ),
    ("GET", "/api/v1/patients/{patient_id}/observations"): (
        "/api/v1/patients/{patient_id}/observations",
        None,
    ),
    ("POST", "/api/v1/patients/{patient_id}/conditions"): (
        "/api/v1/patients/{patient_id}/conditions",
        {"code": "J45"},
    ),
    ("GET", "/api/v1/patients/{patient_id}/conditions"): ("/api/v1/patients/{patient_id}/conditions", None),
    ("GET", "/api/v1/patients/{patient_id}/conditions/{condition_id}"): (
        "/api/v1/patients/{patient_id}/conditions/{condition_id}",
        None,
    ),
    ("PATCH", "/api/v1/patients/{patient_id}/conditions/{condition_id}"): (
        "/api/v1/patients/{patient_id}/conditions/{condition_id}",
        {"clinical_status": "remission"},
    ),
    ("POST", "/api/v1/patients/{patient_id}/allergies"): (
        "/api/v1/patients/{patient_id}/allergies",
        {"substance": "Egg", "severity": "mild"},
    ),
    ("GET", "/api/v1/patients/{patient_id}/allergies"): ("/api/v1/patients/{patient_id}/allergies", None),
    ("GET", "/api/v1/patients/{patient_id}/allergies/{allergy_id}"): (
        "/api/v1/patients/{patient_id}/allergies/{allergy_id}",
        None,
    ),
    ("PATCH", "/api/v1/patients/{patient_id}/allergies/{allergy_id}"): (
        "/api/v1/patients/{patient_id}/allergies/{allergy_id}",
        {"severity": "moderate"},
    ),
    ("POST", "/api/v1/patients/{patient_id}/prescriptions"): (
        "/api/v1/patients/{patient_id}/prescriptions",
        {"drug_name": "Atorvastatin", "dose_value": 20, "dose_unit": "mg"},
    ),
    ("GET", "/api/v1/patients/{patient_id}/prescriptions"): (
        "/api/v1/patients/{patient_id}/prescriptions",
        None,
    ),
    ("GET", "/api/v1/patients/{patient_id}/prescriptions/{prescription_id}"): (
        "/api/v1/patients/{patient_id}/prescriptions/{prescription_id}",
        None,
    ),
    ("PATCH", "/api/v1/patients/{patient_id}/prescriptions/{prescription_id}"): (
        "/api/v1/patients/{patient_id}/prescriptions/{prescription_id}",
        {"status": "on-hold"},
    ),
    ("POST", "/api/v1/patients/{patient_id}/lab-orders"): (
        "/api/v1/patients/{patient_id}/lab-orders",
        {"code": "718-7", "display": "Hemoglobin"},
    ),
    ("GET", "/api/v1/patients/{patient_id}/lab-orders"): ("/api/v1/patients/{patient_id}/lab-orders", None),
    ("GET", "/api/v1/patients/{patient_id}/lab-orders/{order_id}"): (
        "/api/v1/patients/{patient_id}/lab-orders/{order_id}",
        None,
    ),
    ("POST", "/api/v1/patients/{patient_id}/lab-orders/{order_id}/collect"): (
        "/api/v1/patients/{patient_id}/lab-orders/{collect_id}/collect",
        {},
    ),
    ("POST", "/api/v1/patients/{patient_id}/lab-orders/{order_id}/result"): (
        "/api/v1/patients/{patient_id}/lab-orders/{result_id}/result",
        {"value": 13.5, "unit": "g/dL"},
    ),
    ("POST", "/api/v1/patients/{patient_id}/lab-orders/{order_id}/cancel"): (
        "/api/v1/patients/{patient_id}/lab-orders/{cancel_id}/cancel",
        {},
    ),
}


async def test_every_patient_data_route_writes_phi_log_rows(
    app: FastAPI, client, physician, patient_id, database_url
):
    routes = patient_data_routes(app)
    assert routes == set(CALLS), f"update CALLS for: {routes ^ set(CALLS)}"
    ctx = await _setup(client, physician, patient_id)
    username = (await client.get("/api/v1/auth/me", headers=physician)).json()["username"]
    for (method, _path), (template, body) in sorted(CALLS.items()):
        before = len(await phi_rows(database_url))
        url = template.format(**ctx)
        response = await client.request(method, url, json=body, headers=physician)
        assert response.status_code < 400, (method, url, response.text)
        new = (await phi_rows(database_url))[before:]
        assert new, f"{method} {url} wrote no PHI access log row"
        assert all(r["patient_id"] == patient_id and r["username"] == username for r in new)
        assert all(r["ip_address"] is not None and r["channel"] == "rest" for r in new)


async def test_a_failed_transaction_keeps_neither_data_nor_log(db, patient_id, database_url):
    actor = Actor.system("test", channel="cli")

    async def write_then_fail() -> None:
        async with db.driver_transaction() as conn:
            await clinical.add_allergy(
                conn=conn,
                actor=actor,
                patient_id=patient_id,
                data=AllergyCreate(substance="Peanut", severity="severe"),
            )
            raise RuntimeError("boom after the write")

    with pytest.raises(RuntimeError):
        await write_then_fail()
    assert await count_rows(database_url, "allergies") == 0
    assert await phi_rows(database_url, resource_type="AllergyIntolerance") == []


async def test_failed_api_write_leaves_nothing(client, physician, patient_id, database_url):
    logged = await phi_rows(database_url)
    response = await client.post(
        f"/api/v1/patients/{patient_id}/observations", json={"heart_rate": 70, "spo2": 120}, headers=physician
    )
    assert response.status_code == 422
    assert await count_rows(database_url, "observations") == 0
    assert await phi_rows(database_url) == logged
