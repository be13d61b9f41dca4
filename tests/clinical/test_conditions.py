from __future__ import annotations

from httpx import AsyncClient

from hims.clinical.coding import icd10cm_lookup, loinc_is_valid
from tests.support import count_rows


async def test_condition_is_validated_and_described_from_icd10cm(client: AsyncClient, physician, patient_id):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/conditions",
        json={"code": "e119", "onset_date": "2020-02-01"},
        headers=physician,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["code"] == "E11.9"
    assert body["code_system"] == "http://hl7.org/fhir/sid/icd-10-cm"
    assert body["display"] == "Type 2 diabetes mellitus without complications"
    assert (body["clinical_status"], body["verification_status"]) == ("active", "confirmed")

    resolved = await client.patch(
        f"/api/v1/patients/{patient_id}/conditions/{body['id']}",
        json={"clinical_status": "resolved", "abatement_date": "2021-01-01"},
        headers=physician,
    )
    assert resolved.status_code == 200
    assert resolved.json()["clinical_status"] == "resolved"
    assert resolved.json()["version"] == 2


async def test_unknown_code_and_bad_status_are_422(client: AsyncClient, physician, patient_id, database_url):
    unknown = await client.post(
        f"/api/v1/patients/{patient_id}/conditions", json={"code": "ZZZ.99"}, headers=physician
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0] == {
        "field": "code",
        "message": "'ZZZ.99' is not an ICD-10-CM code.",
        "code": "unknown_code",
    }
    chapter = await client.post(
        f"/api/v1/patients/{patient_id}/conditions", json={"code": "E08-E13"}, headers=physician
    )
    assert chapter.status_code == 422
    status = await client.post(
        f"/api/v1/patients/{patient_id}/conditions",
        json={"code": "I10", "clinical_status": "cured"},
        headers=physician,
    )
    assert status.status_code == 422
    assert status.json()["errors"][0]["field"] == "clinical_status"
    future = await client.post(
        f"/api/v1/patients/{patient_id}/conditions",
        json={"code": "I10", "onset_date": "2999-01-01"},
        headers=physician,
    )
    assert future.status_code == 422
    assert await count_rows(database_url, "conditions") == 0


async def test_condition_of_another_patient_is_404(client: AsyncClient, physician, patient_id, db):
    from tests.clinical.factories import make_patient

    created = await client.post(
        f"/api/v1/patients/{patient_id}/conditions", json={"code": "I10"}, headers=physician
    )
    async with db.driver_transaction() as conn:
        other = await make_patient(conn, family_name="Other")
    response = await client.get(
        f"/api/v1/patients/{other['id']}/conditions/{created.json()['id']}", headers=physician
    )
    assert response.status_code == 404


def test_code_helpers():
    assert icd10cm_lookup("I10") == ("I10", "Essential (primary) hypertension")
    assert icd10cm_lookup("nonsense") is None
    assert loinc_is_valid("8480-6")
    assert loinc_is_valid("59408-5")
    assert not loinc_is_valid("8480-5")
    assert not loinc_is_valid("abc")
