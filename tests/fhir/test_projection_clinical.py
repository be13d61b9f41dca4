"""FHIR and REST share consultations, vital signs, conditions and allergies (one record each)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from httpx import AsyncClient

from hims.settings import Settings
from tests.fhir.conftest import create, patient
from tests.patients.factories import auth_headers, make_patient, merge_patients
from tests.support import count_rows

LOINC = "http://loinc.org"
VITAL_SIGNS = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
    ]
}


def _ago(hours: int) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def encounter(patient_ref: str, **overrides: Any) -> dict[str, Any]:
    """An ambulatory Encounter in progress, started an hour ago."""
    body: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": patient_ref},
        "period": {"start": _ago(1)},
        "reasonCode": [{"text": "Cough for three days"}],
    }
    body.update(overrides)
    return body


def heart_rate(patient_ref: str, **overrides: Any) -> dict[str, Any]:
    """A heart-rate vital sign."""
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": _ago(1),
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    body.update(overrides)
    return body


def condition(patient_ref: str, **overrides: Any) -> dict[str, Any]:
    """An ICD-10-CM coded Condition."""
    body: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/sid/icd-10-cm",
                    "code": "E11.9",
                    "display": "Type 2 diabetes mellitus without complications",
                }
            ]
        },
        "subject": {"reference": patient_ref},
        "onsetDateTime": "2019-03-01",
    }
    body.update(overrides)
    return body


def allergy(patient_ref: str, **overrides: Any) -> dict[str, Any]:
    """A penicillin allergy with a reaction."""
    body: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "code": {"text": "Penicillin"},
        "patient": {"reference": patient_ref},
        "reaction": [{"manifestation": [{"text": "Hives"}], "severity": "severe"}],
    }
    body.update(overrides)
    return body


async def _row(database_url: str, table: str, id_: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1", uuid.UUID(id_))
    finally:
        await conn.close()


async def test_fhir_resources_are_domain_records(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    headers = auth_headers(settings, "physician")
    pid = (await create(fhir, patient()))["id"]
    ref = f"Patient/{pid}"
    enc = await create(fhir, encounter(ref))
    cond = await create(fhir, condition(ref, encounter={"reference": f"Encounter/{enc['id']}"}))
    obs = await create(fhir, heart_rate(ref, encounter={"reference": f"Encounter/{enc['id']}"}))
    alg = await create(fhir, allergy(ref))

    consultation = (await client.get(f"/api/v1/consultations/{enc['id']}", headers=headers)).json()
    assert (consultation["patient_id"], consultation["status"], consultation["kind"]) == (
        pid,
        "in_progress",
        "walk_in",
    )
    assert consultation["reason"] == "Cough for three days"
    base = f"/api/v1/patients/{pid}"
    problem = (await client.get(f"{base}/conditions/{cond['id']}", headers=headers)).json()
    assert (problem["code"], problem["onset_date"], problem["consultation_id"]) == (
        "E11.9",
        "2019-03-01",
        enc["id"],
    )
    assert (problem["clinical_status"], problem["verification_status"]) == ("active", "confirmed")
    vitals = (await client.get(f"{base}/observations", headers=headers)).json()
    assert [(v["id"], v["code"], v["value"], v["unit"]) for v in vitals] == [
        (obs["id"], "8867-4", 72.0, "/min")
    ]
    assert vitals[0]["consultation_id"] == enc["id"]
    assert vitals[0]["group_id"]
    penicillin = (await client.get(f"{base}/allergies/{alg['id']}", headers=headers)).json()
    assert (
        penicillin["substance"],
        penicillin["reaction"],
        penicillin["severity"],
        penicillin["status"],
    ) == (
        "Penicillin",
        "Hives",
        "severe",
        "active",
    )


async def test_rest_records_are_readable_and_searchable_in_fhir(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    headers = auth_headers(settings, "physician")
    pid = (await make_patient(client, settings))["id"]
    base = f"/api/v1/patients/{pid}"
    started = await client.post(f"{base}/consultations", json={"reason": "Headache"}, headers=headers)
    assert started.status_code == 201, started.text
    vitals = await client.post(f"{base}/observations", json={"heart_rate": "88"}, headers=headers)
    assert vitals.status_code == 201, vitals.text
    cond = await client.post(f"{base}/conditions", json={"code": "I10"}, headers=headers)
    assert cond.status_code == 201, cond.text
    alg = await client.post(
        f"{base}/allergies", json={"substance": "Latex", "severity": "mild"}, headers=headers
    )
    assert alg.status_code == 201, alg.text

    enc = (await fhir.get(f"/Encounter/{started.json()['id']}")).json()
    assert (enc["status"], enc["subject"], enc["reasonCode"]) == (
        "in-progress",
        {"reference": f"Patient/{pid}"},
        [{"text": "Headache"}],
    )
    obs = (await fhir.get(f"/Observation/{vitals.json()[0]['id']}")).json()
    assert (obs["code"]["coding"][0]["code"], obs["valueQuantity"]["value"]) == ("8867-4", 88)
    for resource_type, params, wanted in (
        ("Encounter", {"subject": f"Patient/{pid}"}, started.json()["id"]),
        ("Observation", {"subject": f"Patient/{pid}", "code": "8867-4"}, vitals.json()[0]["id"]),
        ("Condition", {"patient": pid, "code": "I10"}, cond.json()["id"]),
        ("AllergyIntolerance", {"patient": pid}, alg.json()["id"]),
    ):
        found = (await fhir.get(f"/{resource_type}", params=params)).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [wanted], resource_type


async def test_rest_updates_make_new_versions_that_keep_fhir_only_elements(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    headers = auth_headers(settings, "physician")
    pid = (await make_patient(client, settings))["id"]
    base = f"/api/v1/patients/{pid}"
    cond_id = (await client.post(f"{base}/conditions", json={"code": "I10"}, headers=headers)).json()["id"]
    resource = (await fhir.get(f"/Condition/{cond_id}")).json()
    resource["bodySite"] = [{"text": "Heart"}]
    put = await fhir.put(f"/Condition/{cond_id}", json=resource)
    assert put.status_code == 200, put.text
    patched = await client.patch(
        f"{base}/conditions/{cond_id}", json={"clinical_status": "resolved"}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    after = (await fhir.get(f"/Condition/{cond_id}")).json()
    assert after["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert after["bodySite"] == [{"text": "Heart"}]
    assert int(after["meta"]["versionId"]) == int(put.json()["meta"]["versionId"]) + 1

    enc_id = (await client.post(f"{base}/consultations", json={}, headers=headers)).json()["id"]
    enc = (await fhir.get(f"/Encounter/{enc_id}")).json()
    enc["priority"] = {"text": "urgent"}
    assert (await fhir.put(f"/Encounter/{enc_id}", json=enc)).status_code == 200
    finished = await client.post(f"/api/v1/consultations/{enc_id}/finish", headers=headers)
    assert finished.status_code == 200, finished.text
    after_enc = (await fhir.get(f"/Encounter/{enc_id}")).json()
    assert (after_enc["status"], after_enc["priority"]) == ("finished", {"text": "urgent"})
    assert "end" in after_enc["period"]


async def test_signed_consultation_changes_through_fhir_only_as_the_domain_allows(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    headers = auth_headers(settings, "physician")
    pid = (await make_patient(client, settings))["id"]
    enc_id = (await client.post(f"/api/v1/patients/{pid}/consultations", json={}, headers=headers)).json()[
        "id"
    ]
    signed = await client.post(f"/api/v1/consultations/{enc_id}/sign", headers=headers)
    assert signed.status_code == 200, signed.text
    resource = (await fhir.get(f"/Encounter/{enc_id}")).json()
    assert resource["status"] == "finished"

    changed = {**resource, "reasonCode": [{"text": "Something else"}]}
    refused = await fhir.put(f"/Encounter/{enc_id}", json=changed)
    assert refused.status_code == 409, refused.text
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "consultation_signed"
    deleted = await fhir.delete(f"/Encounter/{enc_id}")
    assert deleted.status_code == 409, deleted.text
    assert deleted.json()["issue"][0]["details"]["coding"][0]["code"] == "consultation_signed"
    # What the consultation does not model can still be added.
    annotated = await fhir.put(f"/Encounter/{enc_id}", json={**resource, "priority": {"text": "routine"}})
    assert annotated.status_code == 200, annotated.text
    row = (await client.get(f"/api/v1/consultations/{enc_id}", headers=headers)).json()
    assert (row["status"], row["reason"]) == ("signed", None)


async def test_deletes_show_on_both_sides(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    headers = auth_headers(settings, "physician")
    pid = (await create(fhir, patient()))["id"]
    ref, base = f"Patient/{pid}", f"/api/v1/patients/{pid}"
    enc = await create(fhir, encounter(ref))
    cond = await create(fhir, condition(ref))
    obs = await create(fhir, heart_rate(ref))
    alg = await create(fhir, allergy(ref))
    for resource_type, body in (
        ("Encounter", enc),
        ("Condition", cond),
        ("Observation", obs),
        ("AllergyIntolerance", alg),
    ):
        assert (await fhir.delete(f"/{resource_type}/{body['id']}")).status_code == 204, resource_type
        assert (await fhir.get(f"/{resource_type}/{body['id']}")).status_code == 410, resource_type
    assert (await client.get(f"/api/v1/consultations/{enc['id']}", headers=headers)).status_code == 404
    withdrawn = (await client.get(f"{base}/conditions/{cond['id']}", headers=headers)).json()
    assert withdrawn["verification_status"] == "entered-in-error"
    assert await _row(database_url, "observations", obs["id"]) is None
    assert (await client.get(f"{base}/allergies/{alg['id']}", headers=headers)).status_code == 404

    # The domain's delete of a condition (entered-in-error) is a FHIR delete.
    rest_id = (await client.post(f"{base}/conditions", json={"code": "I10"}, headers=headers)).json()["id"]
    assert (await fhir.get(f"/Condition/{rest_id}")).status_code == 200
    withdraw = await client.patch(
        f"{base}/conditions/{rest_id}", json={"verification_status": "entered-in-error"}, headers=headers
    )
    assert withdraw.status_code == 200, withdraw.text
    assert (await fhir.get(f"/Condition/{rest_id}")).status_code == 410


async def test_overridden_allergy_cannot_be_deleted(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    headers = auth_headers(settings, "physician")
    pid = (await make_patient(client, settings))["id"]
    base = f"/api/v1/patients/{pid}"
    alg = await client.post(
        f"{base}/allergies", json={"substance": "Amoxicillin", "severity": "severe"}, headers=headers
    )
    assert alg.status_code == 201, alg.text
    prescribed = await client.post(
        f"{base}/prescriptions",
        json={
            "drug_name": "Amoxicillin",
            "dose_value": "500",
            "dose_unit": "mg",
            "override_reason": "tolerated it before, benefit outweighs",
        },
        headers=headers,
    )
    assert prescribed.status_code == 201, prescribed.text
    assert prescribed.json()["allergy_overrides"], prescribed.text
    refused = await fhir.delete(f"/AllergyIntolerance/{alg.json()['id']}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "allergy_overridden"
    assert (await client.get(f"{base}/allergies/{alg.json()['id']}", headers=headers)).status_code == 200


async def test_what_is_no_domain_record_stays_fhir_only(fhir: AsyncClient, database_url: str) -> None:
    ref = f"Patient/{(await create(fhir, patient()))['id']}"
    # A Patient whose id is not one of ours is no registered patient: FHIR-only, with its records.
    assert (
        await fhir.put("/Patient/elsewhere-1", json={**patient(), "id": "elsewhere-1"})
    ).status_code == 201
    unregistered = "Patient/elsewhere-1"
    panel = heart_rate(ref, code={"coding": [{"system": LOINC, "code": "85354-9"}]})
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": v, "code": "mm[Hg]"},
        }
        for code, v in (("8480-6", 120), ("8462-4", 80))
    ]
    lab = heart_rate(ref, category=[{"coding": [{"code": "laboratory"}]}])
    inpatient = encounter(ref, **{"class": {"code": "IMP"}})
    for body, table in (
        (panel, "observations"),
        (lab, "observations"),
        (heart_rate(unregistered), "observations"),
        (inpatient, "consultations"),
        (encounter(ref, status="planned"), "consultations"),
        (condition(ref, code={"text": "no coding"}), "conditions"),
        (allergy(unregistered), "allergies"),
    ):
        stored = await create(fhir, body)
        assert await _row(database_url, table, stored["id"]) is None, body


async def test_what_breaks_a_domain_rule_is_refused_not_kept_aside(
    fhir: AsyncClient, database_url: str
) -> None:
    """A resource that is a domain record by its kind but breaks one of its rules is refused as
    REST refuses it; it is not stored FHIR-only instead."""
    ref = f"Patient/{(await create(fhir, patient()))['id']}"
    no_birth_date = patient(family="Mensah", given="Kofi")
    del no_birth_date["birthDate"]
    # A year no test creates a partition for (the Synthea import creates the years it meets).
    long_ago = encounter(ref, period={"start": "1801-05-01T10:00:00Z"})
    for body, field, code in (
        (no_birth_date, "date_of_birth", "required"),
        (long_ago, "started_at", "partition_missing"),
    ):
        refused = await fhir.post(f"/{body['resourceType']}", json=body)
        assert refused.status_code == 422, refused.text
        issues = refused.json()["issue"]
        assert (issues[1]["expression"], issues[1]["details"]["coding"][0]["code"]) == ([field], code)
    assert issues[1]["diagnostics"] == "Year 1801 is not prepared."
    assert await count_rows(database_url, "patients") == 1
    assert await count_rows(database_url, "consultations") == 0
    assert await count_rows(database_url, "fhir_resources") == 1


async def test_update_that_breaks_a_row_is_refused(fhir: AsyncClient, database_url: str) -> None:
    ref = f"Patient/{(await create(fhir, patient()))['id']}"
    cond = await create(fhir, condition(ref))
    enc = await create(fhir, encounter(ref))
    before = await count_rows(database_url, "conditions")
    for resource_type, broken, code in (
        ("Condition", {**cond, "code": {"text": "no coding"}}, "domain_constraint"),
        # The consultations domain's own rule, as REST gives it.
        ("Encounter", {**enc, "period": {"start": _ago(30)}}, "validation_failed"),
        ("Encounter", {**enc, "status": "cancelled"}, "domain_constraint"),
    ):
        refused = await fhir.put(f"/{resource_type}/{broken['id']}", json=broken)
        assert refused.status_code == 422, refused.text
        assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == code
        assert (await fhir.get(f"/{resource_type}/{broken['id']}")).json()["meta"]["versionId"] == "1"
    row = await _row(database_url, "conditions", cond["id"])
    assert row is not None
    assert (row["code"], row["version"]) == ("E11.9", 1)
    assert await count_rows(database_url, "conditions") == before


async def test_transaction_bundle_links_the_new_records(fhir: AsyncClient, database_url: str) -> None:
    names = ("patient", "practitioner", "encounter", "condition", "obs", "allergy")
    urns = {name: f"urn:uuid:{uuid.uuid4()}" for name in names}
    resources = {
        "patient": patient(),
        "practitioner": {"resourceType": "Practitioner", "name": [{"family": "Adeyemi", "given": ["Ngozi"]}]},
        "encounter": encounter(
            urns["patient"], participant=[{"individual": {"reference": urns["practitioner"]}}]
        ),
        "condition": condition(urns["patient"], encounter={"reference": urns["encounter"]}),
        "obs": heart_rate(urns["patient"], encounter={"reference": urns["encounter"]}),
        "allergy": allergy(urns["patient"]),
    }
    # Referencing entries first: the projection orders the writes itself.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": urns[name],
                "resource": body,
                "request": {"method": "POST", "url": body["resourceType"]},
            }
            for name, body in reversed(resources.items())
        ],
    }
    response = await fhir.post("/", json=bundle)
    assert response.status_code == 200, response.text
    ids = {
        entry["response"]["location"].split("/")[0]: entry["response"]["location"].split("/")[1]
        for entry in response.json()["entry"]
    }
    consultation = await _row(database_url, "consultations", ids["Encounter"])
    assert consultation is not None
    assert str(consultation["patient_id"]) == ids["Patient"]
    # The practitioner is linked once Practitioner has rows of its own (projected by its domain).
    has_row = await _row(database_url, "practitioners", ids["Practitioner"]) is not None
    linked = consultation["practitioner_id"]
    assert (str(linked) if linked else None) == (ids["Practitioner"] if has_row else None)
    for table, resource_type in (("conditions", "Condition"), ("observations", "Observation")):
        row = await _row(database_url, table, ids[resource_type])
        assert row is not None, table
        assert (str(row["patient_id"]), str(row["consultation_id"])) == (ids["Patient"], ids["Encounter"])
    allergy_row = await _row(database_url, "allergies", ids["AllergyIntolerance"])
    assert allergy_row is not None
    assert str(allergy_row["patient_id"]) == ids["Patient"]


async def test_patient_merge_moves_the_fhir_records_too(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    headers = auth_headers(settings, "physician")
    loser = (await make_patient(client, settings))["id"]
    survivor = (await make_patient(client, settings))["id"]
    cond_id = (
        await client.post(f"/api/v1/patients/{loser}/conditions", json={"code": "I10"}, headers=headers)
    ).json()["id"]
    enc_id = (await client.post(f"/api/v1/patients/{loser}/consultations", json={}, headers=headers)).json()[
        "id"
    ]
    await merge_patients(client, settings, loser, survivor)
    assert (await fhir.get(f"/Condition/{cond_id}")).json()["subject"] == {"reference": f"Patient/{survivor}"}
    assert (await fhir.get(f"/Encounter/{enc_id}")).json()["subject"] == {"reference": f"Patient/{survivor}"}
