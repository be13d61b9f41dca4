"""FHIR and REST share the patients: one record, written through either API, read through both."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from hims.fhir.mappings.patient import MRN_SYSTEM
from hims.patients.mrn import is_valid_mrn
from hims.settings import Settings
from tests.fhir.conftest import create, patient
from tests.patients.factories import auth_headers, make_patient, merge_patients
from tests.support import count_rows


def _mrn(resource: dict[str, Any]) -> str | None:
    return next((i["value"] for i in resource.get("identifier", []) if i.get("system") == MRN_SYSTEM), None)


async def test_fhir_patient_is_a_registered_patient(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    body = await create(fhir, patient(telecom=[{"system": "phone", "value": "+234 803 555 0101"}]))
    mrn = _mrn(body)
    assert mrn is not None, body["identifier"]
    assert is_valid_mrn(mrn)
    rest = await client.get(f"/api/v1/patients/{body['id']}", headers=auth_headers(settings, "physician"))
    assert rest.status_code == 200, rest.text
    row = rest.json()
    assert (row["given_name"], row["family_name"], row["date_of_birth"]) == ("Adaeze", "Okafor", "1980-05-17")
    assert (row["sex_at_birth"], row["city"], row["country"], row["phone"]) == (
        "female",
        "Lagos",
        "NG",
        "+234 803 555 0101",
    )
    assert row["mrn"] == mrn
    assert {"system": "urn:mrn", "value": "MRN-1"} in [
        {k: i[k] for k in ("system", "value")} for i in row["identifiers"]
    ]
    # The REST patient search finds it too (same row, same indexes).
    found = await client.get(
        "/api/v1/patients", params={"family": "okaf"}, headers=auth_headers(settings, "physician")
    )
    assert [p["id"] for p in found.json()["items"]] == [body["id"]]


async def test_rest_patient_is_a_fhir_patient_and_keeps_fhir_only_elements(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    made = await make_patient(client, settings, given_name="Chidi", family_name="Eze", city="Enugu")
    read = await fhir.get(f"/Patient/{made['id']}")
    assert read.status_code == 200, read.text
    resource = read.json()
    assert resource["name"][0]["family"] == "Eze"
    assert resource["name"][0]["given"] == ["Chidi"]
    assert resource["birthDate"] == made["date_of_birth"]
    assert _mrn(resource) == made["mrn"]
    searched = await fhir.get("/Patient", params={"family": "eze"})
    assert [e["resource"]["id"] for e in searched.json()["entry"]] == [made["id"]]

    # A FHIR client adds what the REST API does not model; a later REST change keeps it.
    resource["maritalStatus"] = {"text": "Married"}
    resource["name"].append({"use": "nickname", "given": ["CJ"]})
    put = await fhir.put(f"/Patient/{made['id']}", json=resource)
    assert put.status_code == 200, put.text
    rest_version = (
        await client.get(f"/api/v1/patients/{made['id']}", headers=auth_headers(settings, "physician"))
    ).json()["version"]
    changed = await client.patch(
        f"/api/v1/patients/{made['id']}",
        json={"city": "Abuja"},
        headers={**auth_headers(settings, "receptionist"), "If-Match": f'W/"{rest_version}"'},
    )
    assert changed.status_code == 200, changed.text
    after = (await fhir.get(f"/Patient/{made['id']}")).json()
    assert after["address"][0]["city"] == "Abuja"
    assert after["maritalStatus"] == {"text": "Married"}
    assert {"use": "nickname", "given": ["CJ"]} in after["name"]
    assert int(after["meta"]["versionId"]) == int(put.json()["meta"]["versionId"]) + 1
    history = (await fhir.get(f"/Patient/{made['id']}/_history")).json()
    assert history["entry"][0]["resource"]["address"][0]["city"] == "Abuja"


async def test_deletes_show_on_both_sides(fhir: AsyncClient, client: AsyncClient, settings: Settings) -> None:
    headers = auth_headers(settings, "physician")
    by_fhir = await create(fhir, patient())
    assert (await fhir.delete(f"/Patient/{by_fhir['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/patients/{by_fhir['id']}", headers=headers)).status_code == 410

    by_rest = await make_patient(client, settings)
    deleted = await client.delete(
        f"/api/v1/patients/{by_rest['id']}", headers=auth_headers(settings, "receptionist")
    )
    assert deleted.status_code == 204, deleted.text
    assert (await fhir.get(f"/Patient/{by_rest['id']}")).status_code == 410


async def test_a_patient_without_a_birth_date_is_refused_unless_its_id_is_no_record_id(
    fhir: AsyncClient, database_url: str
) -> None:
    no_birth_date = patient()
    del no_birth_date["birthDate"]
    refused = await fhir.post("/Patient", json=no_birth_date)
    assert refused.status_code == 422, refused.text
    assert ["date_of_birth"] in [i.get("expression") for i in refused.json()["issue"]]
    assert await count_rows(database_url, "patients") == 0
    assert await count_rows(database_url, "fhir_resources") == 0
    # A client-chosen id is no record of ours: kept in the FHIR store as sent.
    kept = await fhir.put("/Patient/example", json={**no_birth_date, "id": "example"})
    assert kept.status_code == 201, kept.text
    assert _mrn(kept.json()) is None

    registered = await create(fhir, patient())
    broken = dict(registered)
    del broken["birthDate"]
    again = await fhir.put(f"/Patient/{registered['id']}", json=broken)
    assert again.status_code == 422, again.text
    current = (await fhir.get(f"/Patient/{registered['id']}")).json()
    assert current["meta"]["versionId"] == "1"
    assert current["birthDate"] == "1980-05-17"


async def test_an_mrn_is_ours_to_assign(fhir: AsyncClient, client: AsyncClient, settings: Settings) -> None:
    mr = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}
    other = await create(fhir, patient(identifier=[{**mr, "system": "urn:oid:1.2.3", "value": "A-778"}]))
    headers = auth_headers(settings, "physician")
    row = (await client.get(f"/api/v1/patients/{other['id']}", headers=headers)).json()
    assert is_valid_mrn(row["mrn"])
    assert row["mrn"] == _mrn(other)
    assert "A-778" in [i["value"] for i in row["identifiers"]]  # another system's number stays one

    ours = {"system": MRN_SYSTEM, "value": row["mrn"]}
    taken = await fhir.post("/Patient", json=patient(family="Mensah", given="Kojo", identifier=[ours]))
    assert taken.status_code == 409, taken.text
    assert taken.json()["issue"][0]["details"]["coding"][0]["code"] == "mrn_taken"
    invalid = {"system": MRN_SYSTEM, "value": "1234567890"}
    bad = await fhir.post("/Patient", json=patient(family="Mensah", given="Kojo", identifier=[invalid]))
    assert bad.status_code == 422, bad.text
    changed = {**other, "identifier": [{"system": MRN_SYSTEM, "value": "0001000010"}]}
    immutable = await fhir.put(f"/Patient/{other['id']}", json=changed)
    assert immutable.status_code == 422, immutable.text


async def test_failed_transaction_leaves_no_patient_row(fhir: AsyncClient, database_url: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient/nope"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code in (400, 404, 422), response.text
    assert await count_rows(database_url, "patients") == 0
    assert await count_rows(database_url, "fhir_resources") == 0


async def test_merged_patient_reads_inactive_and_replaced_by_in_fhir(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    keep = await make_patient(client, settings, family_name="Keeper")
    dupe = await make_patient(client, settings, family_name="Keeperr")
    await merge_patients(client, settings, dupe["id"], keep["id"])
    gone = (await fhir.get(f"/Patient/{dupe['id']}")).json()
    assert gone["active"] is False
    assert gone["link"] == [{"other": {"reference": f"Patient/{keep['id']}"}, "type": "replaced-by"}]
    survivor = (await fhir.get(f"/Patient/{keep['id']}")).json()
    assert survivor["active"] is True
    assert "link" not in survivor
