from __future__ import annotations

import pytest
from httpx import AsyncClient

from hims.clinical.allergy_check import AllergyFacts, find_conflicts
from tests.clinical.conftest import auth_headers
from tests.support import count_rows, phi_rows

RX = {"dose_value": 500, "dose_unit": "mg", "route": "oral", "frequency": "every 8 hours", "duration_days": 7}


async def _allergy(client, headers, patient_id, substance, **extra):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/allergies",
        json={"substance": substance, "severity": "severe", "reaction": "hives", **extra},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_allergy_crud(client: AsyncClient, physician, patient_id):
    allergy = await _allergy(client, physician, patient_id, "Peanut", code_system="snomed", code="256349002")
    assert allergy["code_system"] == "http://snomed.info/sct"
    assert allergy["status"] == "active"
    updated = await client.patch(
        f"/api/v1/patients/{patient_id}/allergies/{allergy['id']}",
        json={"status": "resolved"},
        headers=physician,
    )
    assert updated.json()["status"] == "resolved"
    bad = await client.post(
        f"/api/v1/patients/{patient_id}/allergies",
        json={"substance": "x", "severity": "deadly"},
        headers=physician,
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "severity"


async def test_class_conflict_is_refused_then_overridden_and_recorded(
    client: AsyncClient, physician, patient_id, database_url
):
    allergy = await _allergy(client, physician, patient_id, "Penicillin")
    refused = await client.post(
        f"/api/v1/patients/{patient_id}/prescriptions",
        json={"drug_name": "Amoxicillin", **RX},
        headers=physician,
    )
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "allergy_conflict"
    assert body["conflicts"] == [
        {
            "allergy_id": allergy["id"],
            "substance": "Penicillin",
            "severity": "severe",
            "reaction": "hives",
            "match": "drug class: penicillin",
        }
    ]
    # A refused write leaves neither data nor log rows.
    assert await count_rows(database_url, "prescriptions") == 0
    assert await phi_rows(database_url, resource_type="MedicationRequest") == []

    overridden = await client.post(
        f"/api/v1/patients/{patient_id}/prescriptions",
        json={
            "drug_name": "Amoxicillin",
            **RX,
            "override_reason": "tolerated amoxicillin in 2023, benefit outweighs",
        },
        headers=physician,
    )
    assert overridden.status_code == 201, overridden.text
    override = overridden.json()["allergy_overrides"]
    assert len(override) == 1
    assert override[0]["allergy_id"] == allergy["id"]
    me = (await client.get("/api/v1/auth/me", headers=physician)).json()
    assert override[0]["overridden_by_name"] == me["username"]
    assert override[0]["reason"].startswith("tolerated")
    assert override[0]["overridden_at"]
    again = await client.get(
        f"/api/v1/patients/{patient_id}/prescriptions/{overridden.json()['id']}", headers=physician
    )
    assert again.json()["allergy_overrides"] == override


@pytest.mark.parametrize(
    ("substance", "drug"),
    [
        ("sulfa drugs", "Sulfamethoxazole/Trimethoprim 800/160"),
        ("NSAIDs", "Naproxen"),
        ("ibuprofen", "IBUPROFEN"),
        ("Ampicillin", "amoxicillin"),
    ],
)
def test_conflict_table(substance, drug):
    found = find_conflicts(drug, None, [AllergyFacts("a1", substance, None, "mild", None)])
    assert [c.allergy_id for c in found] == ["a1"]


def test_no_conflict_for_unrelated_or_by_code():
    assert find_conflicts("Metformin", None, [AllergyFacts("a1", "Penicillin", None, "mild", None)]) == []
    by_code = find_conflicts("Brand X", "723", [AllergyFacts("a1", "Something", "723", "mild", None)])
    assert by_code[0].match == "same RxNorm code"


async def test_inactive_allergy_does_not_block(client: AsyncClient, physician, patient_id):
    await _allergy(client, physician, patient_id, "Ibuprofen", status="inactive")
    ok = await client.post(
        f"/api/v1/patients/{patient_id}/prescriptions",
        json={"drug_name": "Ibuprofen", **RX},
        headers=physician,
    )
    assert ok.status_code == 201
    assert ok.json()["allergy_overrides"] == []


async def test_dose_without_unit_is_422(client: AsyncClient, physician, patient_id, database_url):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/prescriptions",
        json={"drug_name": "Metformin", "dose_value": 500},
        headers=physician,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "dose_unit"
    assert await count_rows(database_url, "prescriptions") == 0


async def test_status_transitions_and_nurse_cannot_prescribe(
    client: AsyncClient, physician, patient_id, settings
):
    nurse = auth_headers(settings, "nurse")
    denied = await client.post(
        f"/api/v1/patients/{patient_id}/prescriptions", json={"drug_name": "Metformin", **RX}, headers=nurse
    )
    assert denied.status_code == 403
    rx = (
        await client.post(
            f"/api/v1/patients/{patient_id}/prescriptions",
            json={"drug_name": "Metformin", **RX},
            headers=physician,
        )
    ).json()
    url = f"/api/v1/patients/{patient_id}/prescriptions/{rx['id']}"
    assert (await client.patch(url, json={"status": "on-hold"}, headers=physician)).json()[
        "status"
    ] == "on-hold"
    assert (await client.patch(url, json={"status": "completed"}, headers=physician)).status_code == 409
    assert (await client.patch(url, json={"status": "cancelled"}, headers=physician)).json()[
        "status"
    ] == "cancelled"
    final = await client.patch(url, json={"status": "active"}, headers=physician)
    assert final.status_code == 409
    assert final.json()["code"] == "invalid_transition"
