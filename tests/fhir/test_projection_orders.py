"""FHIR and REST share prescriptions, lab orders and documents: one record, read through both."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient

from hims.fhir.mappings._common import ext_url
from hims.settings import Settings
from tests.fhir.conftest import create
from tests.patients.factories import auth_headers, make_patient
from tests.support import count_rows

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def medication_request(patient_id: str, **overrides: Any) -> dict[str, Any]:
    """An active amoxicillin order with one dosage instruction."""
    body: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "308182", "display": "Amoxicillin 250 MG"}],
            "text": "Amoxicillin 250 MG",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-11-01T09:30:00Z",
        "dosageInstruction": [
            {
                "text": "after meals",
                "timing": {"code": {"text": "three times daily"}},
                "route": {"text": "oral"},
                "doseAndRate": [{"doseQuantity": {"value": 250, "unit": "mg"}}],
            }
        ],
        "dispenseRequest": {"expectedSupplyDuration": {"value": 7, "unit": "days", "code": "d"}},
        "note": [{"text": "FHIR-only note"}],
    }
    body.update(overrides)
    return body


def service_request(patient_id: str, **overrides: Any) -> dict[str, Any]:
    """A glucose order (LOINC 2345-7)."""
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-11-02T08:00:00Z",
        "priority": "urgent",
    }
    body.update(overrides)
    return body


def _rest(settings: Settings, role: str = "physician") -> dict[str, str]:
    return auth_headers(settings, role)


async def _prescription(client: AsyncClient, settings: Settings, patient_id: str, id_: str) -> Any:
    return await client.get(f"/api/v1/patients/{patient_id}/prescriptions/{id_}", headers=_rest(settings))


async def _lab(client: AsyncClient, settings: Settings, patient_id: str, id_: str) -> Any:
    return await client.get(f"/api/v1/patients/{patient_id}/lab-orders/{id_}", headers=_rest(settings))


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


# ------------------------------------------------------------------------------ MedicationRequest


async def test_fhir_medication_request_is_a_prescription_and_rest_changes_keep_fhir_only_elements(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    patient = await make_patient(client, settings)
    body = await create(fhir, medication_request(patient["id"]))
    rest = await _prescription(client, settings, patient["id"], body["id"])
    assert rest.status_code == 200, rest.text
    row = rest.json()
    assert (row["drug_name"], row["rxnorm_code"], row["dose_value"], row["dose_unit"]) == (
        "Amoxicillin 250 MG",
        "308182",
        250,
        "mg",
    )
    assert (row["route"], row["frequency"], row["duration_days"], row["instructions"]) == (
        "oral",
        "three times daily",
        7,
        "after meals",
    )
    assert row["status"] == "active"
    assert row["prescribed_at"].startswith("2026-11-01T09:30:00")

    changed = await client.patch(
        f"/api/v1/patients/{patient['id']}/prescriptions/{body['id']}",
        json={"status": "completed"},
        headers=_rest(settings),
    )
    assert changed.status_code == 200, changed.text
    after = (await fhir.get(f"/MedicationRequest/{body['id']}")).json()
    assert after["status"] == "completed"
    assert after["note"] == [{"text": "FHIR-only note"}]
    assert after["meta"]["versionId"] == "2"


async def test_rest_prescription_is_readable_and_searchable_in_fhir(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    patient = await make_patient(client, settings)
    made = await client.post(
        f"/api/v1/patients/{patient['id']}/prescriptions",
        json={"drug_name": "Metformin", "dose_value": 500, "dose_unit": "mg", "frequency": "twice daily"},
        headers=_rest(settings),
    )
    assert made.status_code == 201, made.text
    read = await fhir.get(f"/MedicationRequest/{made.json()['id']}")
    assert read.status_code == 200, read.text
    resource = read.json()
    assert resource["medicationCodeableConcept"]["text"] == "Metformin"
    assert resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 500
    assert resource["subject"] == {"reference": f"Patient/{patient['id']}"}
    found = (await fhir.get("/MedicationRequest", params={"patient": patient["id"]})).json()
    assert _ids(found) == [made.json()["id"]]


async def test_fhir_prescription_gets_the_allergy_check(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    patient = await make_patient(client, settings)
    allergy = await client.post(
        f"/api/v1/patients/{patient['id']}/allergies",
        json={"substance": "Penicillin", "severity": "severe", "reaction": "anaphylaxis"},
        headers=_rest(settings),
    )
    assert allergy.status_code == 201, allergy.text
    before = await count_rows(database_url, "prescriptions")
    refused = await fhir.post("/MedicationRequest", json=medication_request(patient["id"]))
    assert refused.status_code == 409, refused.text
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "allergy_conflict"
    assert await count_rows(database_url, "prescriptions") == before
    assert _ids((await fhir.get("/MedicationRequest", params={"patient": patient["id"]})).json()) == []

    # A finished course is a record of the past, not prescribing: it is kept as it is.
    history = await create(fhir, medication_request(patient["id"], status="completed"))
    assert (await _prescription(client, settings, patient["id"], history["id"])).json()[
        "status"
    ] == "completed"


async def test_unprojectable_medication_requests_stay_fhir_only(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    patient = await make_patient(client, settings)
    before = await count_rows(database_url, "prescriptions")
    draft = await create(fhir, medication_request(patient["id"], status="draft"))
    no_dose = await create(fhir, medication_request(patient["id"], dosageInstruction=[{"text": "as needed"}]))
    proposal = await create(fhir, medication_request(patient["id"], intent="proposal"))
    for body in (draft, no_dose, proposal):
        assert (await _prescription(client, settings, patient["id"], body["id"])).status_code == 404
        assert (await fhir.get(f"/MedicationRequest/{body['id']}")).status_code == 200
    assert await count_rows(database_url, "prescriptions") == before


async def test_update_breaking_a_prescription_is_refused(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    patient = await make_patient(client, settings)
    body = await create(fhir, medication_request(patient["id"], status="cancelled"))
    revived = {**body, "status": "active"}
    refused = await fhir.put(f"/MedicationRequest/{body['id']}", json=revived)
    # The prescriptions domain's transition rule, with REST's status and code.
    assert refused.status_code == 409, refused.text
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_transition"
    no_dose = {**body, "dosageInstruction": []}
    assert (await fhir.put(f"/MedicationRequest/{body['id']}", json=no_dose)).status_code == 422
    again = (await fhir.get(f"/MedicationRequest/{body['id']}")).json()
    assert (again["meta"]["versionId"], again["status"]) == ("1", "cancelled")
    assert (await _prescription(client, settings, patient["id"], body["id"])).json()["dose_value"] == 250


async def test_fhir_delete_cancels_the_prescription(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    patient = await make_patient(client, settings)
    body = await create(fhir, medication_request(patient["id"]))
    assert (await fhir.delete(f"/MedicationRequest/{body['id']}")).status_code == 204
    assert (await fhir.get(f"/MedicationRequest/{body['id']}")).status_code == 410
    row = (await _prescription(client, settings, patient["id"], body["id"])).json()
    assert row["status"] == "cancelled"


# ------------------------------------------------------------------------------ ServiceRequest


async def test_fhir_service_request_is_a_lab_order(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    patient = await make_patient(client, settings)
    body = await create(fhir, service_request(patient["id"]))
    row = (await _lab(client, settings, patient["id"], body["id"])).json()
    assert (row["code"], row["display"], row["status"]) == ("2345-7", "Glucose", "ordered")
    assert row["ordered_at"].startswith("2026-11-02T08:00:00")

    before = await count_rows(database_url, "lab_orders")
    imaging = service_request(
        patient["id"], code={"coding": [{"system": "http://snomed.info/sct", "code": "77477000"}]}
    )
    fhir_only = await create(fhir, imaging)
    assert (await _lab(client, settings, patient["id"], fhir_only["id"])).status_code == 404
    assert await count_rows(database_url, "lab_orders") == before

    assert (await fhir.delete(f"/ServiceRequest/{body['id']}")).status_code == 204
    assert (await _lab(client, settings, patient["id"], body["id"])).json()["status"] == "cancelled"


async def test_rest_lab_order_and_its_result_appear_in_fhir(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    patient = await make_patient(client, settings)
    base = f"/api/v1/patients/{patient['id']}/lab-orders"
    made = await client.post(base, json={"code": "2345-7", "display": "Glucose"}, headers=_rest(settings))
    assert made.status_code == 201, made.text
    order_id = made.json()["id"]
    ordered = (await fhir.get(f"/ServiceRequest/{order_id}")).json()
    assert (ordered["status"], ordered["code"]["coding"][0]["code"]) == ("active", "2345-7")
    assert (await fhir.get(f"/Observation/{order_id}")).status_code == 404

    # A FHIR client adds an element we do not model; the REST result keeps it.
    ordered["priority"] = "stat"
    assert (await fhir.put(f"/ServiceRequest/{order_id}", json=ordered)).status_code == 200
    resulted = await client.post(
        f"{base}/{order_id}/result",
        json={"value": "7.9", "unit": "mmol/L", "reference_low": "3.9", "reference_high": "5.5"},
        headers=_rest(settings),
    )
    assert resulted.status_code == 200, resulted.text
    order = (await fhir.get(f"/ServiceRequest/{order_id}")).json()
    assert (order["status"], order["priority"]) == ("completed", "stat")
    observation = (await fhir.get(f"/Observation/{order_id}")).json()
    assert observation["valueQuantity"]["value"] == 7.9
    assert observation["interpretation"][0]["coding"][0]["code"] == "H"
    assert observation["basedOn"] == [{"reference": f"ServiceRequest/{order_id}"}]
    report = (await fhir.get(f"/DiagnosticReport/{order_id}")).json()
    assert report["result"] == [{"reference": f"Observation/{order_id}"}]
    found = (
        await fhir.get("/Observation", params={"patient": patient["id"], "category": "laboratory"})
    ).json()
    assert _ids(found) == [order_id]
    assert _ids((await fhir.get("/ServiceRequest", params={"patient": patient["id"]})).json()) == [order_id]


async def test_lab_status_cannot_go_back(fhir: AsyncClient, client: AsyncClient, settings: Settings) -> None:
    patient = await make_patient(client, settings)
    body = await create(fhir, service_request(patient["id"], status="completed"))
    refused = await fhir.put(f"/ServiceRequest/{body['id']}", json={**body, "status": "active"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_transition"
    assert (await _lab(client, settings, patient["id"], body["id"])).json()["status"] == "resulted"


# ------------------------------------------------------------------------------ DocumentReference


async def _upload(client: AsyncClient, settings: Settings, patient_id: str) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/patients/{patient_id}/documents",
        files={"file": ("letter.pdf", PDF, "application/pdf")},
        data={"title": "Discharge letter"},
        headers=_rest(settings, "nurse"),
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_rest_document_is_a_document_reference_and_fhir_edits_its_metadata(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    patient = await make_patient(client, settings)
    document = await _upload(client, settings, patient["id"])
    read = await fhir.get(f"/DocumentReference/{document['id']}")
    assert read.status_code == 200, read.text
    resource = read.json()
    attachment = resource["content"][0]["attachment"]
    assert (attachment["contentType"], attachment["size"], attachment["title"]) == (
        "application/pdf",
        len(PDF),
        "letter.pdf",
    )
    sha = {"url": ext_url("attachment-sha256"), "valueString": hashlib.sha256(PDF).hexdigest()}
    assert attachment["extension"] == [sha]
    assert resource["description"] == "Discharge letter"
    found = (await fhir.get("/DocumentReference", params={"patient": patient["id"]})).json()
    assert _ids(found) == [document["id"]]

    resource["description"] = "Discharge summary"
    resource["type"] = {"text": "Discharge summary"}
    assert (await fhir.put(f"/DocumentReference/{document['id']}", json=resource)).status_code == 200
    meta = await client.get(f"/api/v1/documents/{document['id']}", headers=_rest(settings, "nurse"))
    assert meta.json()["title"] == "Discharge summary"

    other_file = {**resource, "content": [{"attachment": {**attachment, "size": 1}}]}
    refused = await fhir.put(f"/DocumentReference/{document['id']}", json=other_file)
    assert refused.status_code == 422, refused.text
    unchanged = await client.get(f"/api/v1/documents/{document['id']}", headers=_rest(settings, "nurse"))
    assert unchanged.json()["size_bytes"] == len(PDF)

    deleted = await client.delete(f"/api/v1/documents/{document['id']}", headers=_rest(settings, "nurse"))
    assert deleted.status_code == 204, deleted.text
    assert (await fhir.get(f"/DocumentReference/{document['id']}")).status_code == 410


async def test_fhir_document_without_our_file_stays_fhir_only_and_fhir_delete_hides_a_document(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    patient = await make_patient(client, settings)
    before = await count_rows(database_url, "documents")
    body = await create(
        fhir,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": f"Patient/{patient['id']}"},
            "content": [
                {"attachment": {"contentType": "application/pdf", "url": "https://example.org/a.pdf"}}
            ],
        },
    )
    assert (
        await client.get(f"/api/v1/documents/{body['id']}", headers=_rest(settings, "nurse"))
    ).status_code == 404
    assert await count_rows(database_url, "documents") == before

    document = await _upload(client, settings, patient["id"])
    assert (await fhir.delete(f"/DocumentReference/{document['id']}")).status_code == 204
    gone = await client.get(f"/api/v1/documents/{document['id']}", headers=_rest(settings, "nurse"))
    assert gone.status_code == 404


# ------------------------------------------------------------------------------ bundles


async def test_transaction_creates_patient_and_orders_linked(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    encounter_urn = f"urn:uuid:{uuid.uuid4()}"
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Bello", "given": ["Musa"]}],
        "gender": "male",
        "birthDate": "1975-02-03",
    }
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": patient_urn},
        "period": {"start": (datetime.now(UTC) - timedelta(hours=2)).isoformat()},
    }
    orders = [
        medication_request("x", subject={"reference": patient_urn}, encounter={"reference": encounter_urn}),
        service_request("x", subject={"reference": patient_urn}, encounter={"reference": encounter_urn}),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": patient_urn, "resource": patient, "request": {"method": "POST", "url": "Patient"}},
            {
                "fullUrl": encounter_urn,
                "resource": encounter,
                "request": {"method": "POST", "url": "Encounter"},
            },
            *({"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in orders),
        ],
    }
    response = await fhir.post("/", json=bundle)
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"].split("/") for e in response.json()["entry"]]
    patient_id, prescription_id, lab_id = locations[0][1], locations[2][1], locations[3][1]
    rest_patient = await client.get(f"/api/v1/patients/{patient_id}", headers=_rest(settings))
    assert rest_patient.status_code == 200, rest_patient.text
    prescription = (await _prescription(client, settings, patient_id, prescription_id)).json()
    lab_order = (await _lab(client, settings, patient_id, lab_id)).json()
    assert prescription["patient_id"] == lab_order["patient_id"] == patient_id
    stored = (await fhir.get(f"/MedicationRequest/{prescription_id}")).json()
    assert stored["encounter"]["reference"] == f"Encounter/{locations[1][1]}"
