from __future__ import annotations

import pytest
from httpx import AsyncClient

from hims.clinical.vitals import VITAL_SIGNS, interpret
from tests.support import count_rows, phi_rows


async def test_vitals_set_is_coded_flagged_and_bmi_derived(
    client: AsyncClient, physician, patient_id, database_url
):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/observations",
        json={
            "systolic_bp": 150,
            "diastolic_bp": 85,
            "heart_rate": 72,
            "body_temperature": 38.4,
            "spo2": 88,
            "respiratory_rate": 16,
            "body_weight": 80,
            "body_height": 180,
        },
        headers=physician,
    )
    assert response.status_code == 201, response.text
    by_code = {o["code"]: o for o in response.json()}
    expected = {
        "8480-6": ("mm[Hg]", "H"),
        "8462-4": ("mm[Hg]", "N"),
        "8867-4": ("/min", "N"),
        "8310-5": ("Cel", "H"),
        "59408-5": ("%", "LL"),
        "9279-1": ("/min", "N"),
        "29463-7": ("kg", None),
        "8302-2": ("cm", None),
        "39156-5": ("kg/m2", "N"),
    }
    assert {c: (o["unit"], o["interpretation"]) for c, o in by_code.items()} == expected
    assert all(o["code_system"] == "http://loinc.org" for o in by_code.values())
    assert by_code["39156-5"]["value"] == pytest.approx(24.7)
    assert by_code["39156-5"]["derived"] is True
    assert len({o["group_id"] for o in by_code.values()}) == 1
    assert len(await phi_rows(database_url, resource_type="Observation", action="create")) == 9


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heart_rate", 0),
        ("heart_rate", 400),
        ("body_temperature", 60),
        ("spo2", 101),
        ("respiratory_rate", 0),
    ],
)
async def test_impossible_values_are_refused_naming_the_field(
    client: AsyncClient, physician, patient_id, database_url, field, value
):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/observations",
        json={field: value, "body_weight": 70},
        headers=physician,
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await count_rows(database_url, "observations") == 0
    assert await phi_rows(database_url, resource_type="Observation") == []


async def test_blood_pressure_needs_both_values(client: AsyncClient, physician, patient_id):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/observations", json={"systolic_bp": 120}, headers=physician
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "diastolic_bp"


async def test_bmi_is_not_accepted_from_clients(client: AsyncClient, physician, patient_id):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/observations", json={"bmi": 22}, headers=physician
    )
    assert response.status_code == 422


async def test_list_filters_by_code(client: AsyncClient, physician, patient_id):
    await client.post(
        f"/api/v1/patients/{patient_id}/observations", json={"heart_rate": 50, "spo2": 97}, headers=physician
    )
    listed = await client.get(f"/api/v1/patients/{patient_id}/observations?code=8867-4", headers=physician)
    assert [(o["code"], o["interpretation"]) for o in listed.json()] == [("8867-4", "L")]


def test_interpretation_boundaries():
    hr = VITAL_SIGNS["heart_rate"]
    assert [interpret(hr, v) for v in (35, 45, 60, 100, 120, 140)] == ["LL", "L", "N", "N", "H", "HH"]
