"""FHIR Organization/Location/Practitioner/Appointment and the REST facilities, departments,
practitioners and appointments are one record each: written through either API, with one version,
and refused by the same rules whether they come through REST, a FHIR create or a transaction."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response

from hims.fhir.mappings.location import DEPARTMENT_CODE_SYSTEM
from hims.fhir.mappings.organization import FACILITY_CODE_SYSTEM
from hims.settings import Settings
from tests.fhir.conftest import create
from tests.patients.factories import (
    auth_headers,
    make_facility,
    make_patient,
    make_practitioner,
    merge_patients,
)
from tests.support import count_rows, phi_rows

TABLES = ("facilities", "departments", "practitioners", "appointments", "fhir_resources")


def organization(**overrides: Any) -> dict[str, Any]:
    """A minimal Organization (no facility code: the server assigns one)."""
    return {"resourceType": "Organization", "name": "St Luke Hospital", **overrides}


def location(facility_id: str, **overrides: Any) -> dict[str, Any]:
    """A department of ``facility_id`` (no code: the server assigns one)."""
    body = {
        "resourceType": "Location",
        "name": "Cardiology",
        "managingOrganization": {"reference": f"Organization/{facility_id}", "display": "St Luke"},
    }
    return {**body, **overrides}


def practitioner(**overrides: Any) -> dict[str, Any]:
    """A minimal Practitioner."""
    body: dict[str, Any] = {
        "resourceType": "Practitioner",
        "name": [{"family": "Bello", "given": ["Tunde"], "prefix": ["Dr"]}],
        "telecom": [{"system": "phone", "value": "+234 1 555 0199"}],
    }
    return {**body, **overrides}


def appointment(
    patient_id: str, practitioner_id: str, start: str, end: str, **overrides: Any
) -> dict[str, Any]:
    """A booked Appointment of a patient with a practitioner."""
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{practitioner_id}"}, "status": "accepted"},
        ],
    }
    return {**body, **overrides}


def booking(patient_id: str, practitioner_id: str, start: str, end: str) -> dict[str, Any]:
    """The REST body booking the same slot as `appointment`."""
    return {"patient_id": patient_id, "practitioner_id": practitioner_id, "starts_at": start, "ends_at": end}


def codes(response: Response) -> set[str]:
    """The stable error codes of a refusal: the error's and its fields' (REST problem or FHIR
    OperationOutcome)."""
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":
        return {c["code"] for i in body["issue"] for c in i.get("details", {}).get("coding", [])}
    return {body["code"], *(e["code"] for e in body.get("errors", []))}


def fields(response: Response) -> set[str]:
    """The fields a refusal names."""
    body = response.json()
    if body.get("resourceType") == "OperationOutcome":
        return {e for i in body["issue"] for e in i.get("expression", [])}
    return {e["field"] for e in body.get("errors", [])}


def transaction(*resources: dict[str, Any]) -> dict[str, Any]:
    """A transaction Bundle creating ``resources``."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ],
    }


async def counts(database_url: str) -> dict[str, int]:
    """Rows in the domain tables and the FHIR store."""
    return {t: await count_rows(database_url, t) for t in TABLES}


async def refused_through_fhir(
    fhir: AsyncClient, database_url: str, resource: dict[str, Any], status: int, code: str
) -> set[str]:
    """Assert a FHIR create of ``resource``, and a transaction with it and a valid Organization,
    are refused with ``status`` and ``code``, writing nothing; returns the fields named."""
    before = await counts(database_url)
    created = await fhir.post(f"/{resource['resourceType']}", json=resource)
    assert created.status_code == status, created.text
    assert code in codes(created), created.text
    bundled = await fhir.post("", json=transaction(organization(name="Bystander"), resource))
    assert bundled.status_code == status, bundled.text
    assert code in codes(bundled), bundled.text
    # The refusal names the entry at fault, also when it is one of a batch of its type.
    assert bundled.json()["issue"][0]["diagnostics"].startswith("Bundle.entry[1]: "), bundled.text
    assert await counts(database_url) == before
    return fields(created) & fields(bundled)


# ---------------------------------------------------------------------------------------------
# one record, either API


async def test_fhir_records_are_rest_records_with_one_version(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    admin = auth_headers(settings, "admin")
    org = await create(fhir, organization(telecom=[{"system": "phone", "value": "+44 20 7946 0000"}]))
    code = next(i["value"] for i in org["identifier"] if i["system"] == FACILITY_CODE_SYSTEM)
    assert code == f"ORG-{uuid.UUID(org['id']).hex[:12].upper()}"
    facility = await client.get(f"/api/v1/facilities/{org['id']}", headers=admin)
    assert (facility.json()["name"], facility.json()["code"], facility.json()["phone"]) == (
        "St Luke Hospital",
        code,
        "+44 20 7946 0000",
    )
    assert facility.headers["ETag"] == f'W/"{org["meta"]["versionId"]}"'

    ward = await create(fhir, location(org["id"]))
    department = await client.get(f"/api/v1/facilities/{org['id']}/departments/{ward['id']}", headers=admin)
    assert department.status_code == 200, department.text
    assert department.json()["name"] == "Cardiology"
    assert department.json()["code"] == f"LOC-{uuid.UUID(ward['id']).hex[:12].upper()}"
    assert {"system": DEPARTMENT_CODE_SYSTEM, "value": department.json()["code"]} in ward["identifier"]

    doctor = await create(fhir, practitioner())
    row = await client.get(f"/api/v1/practitioners/{doctor['id']}", headers=admin)
    assert (row.json()["given_name"], row.json()["family_name"], row.json()["prefix"]) == (
        "Tunde",
        "Bello",
        "Dr",
    )
    assert (row.json()["profession"], row.json()["active"]) == ("other", True)

    # A REST change is the record's next version in both APIs.
    changed = await client.patch(
        f"/api/v1/facilities/{org['id']}", json={"city": "Leeds"}, headers={**admin, "If-Match": 'W/"1"'}
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] == 'W/"2"'
    after = (await fhir.get(f"/Organization/{org['id']}")).json()
    assert after["meta"]["versionId"] == "2"
    assert after["address"] == [{"city": "Leeds"}]
    assert code in [i["value"] for i in after["identifier"]]
    # Facilities are not patient data: REST writes and reads log no PHI access.
    assert await phi_rows(database_url, channel="rest") == []


async def test_rest_practitioner_keeps_what_a_fhir_client_sent(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    made = await make_practitioner(client, settings, family_name="Okonkwo", email="o@example.org")
    read = await fhir.get(f"/Practitioner/{made['id']}")
    assert read.status_code == 200, read.text
    resource = read.json()
    assert resource["name"][0]["family"] == "Okonkwo"
    searched = await fhir.get("/Practitioner", params={"family": "okonkwo"})
    assert [e["resource"]["id"] for e in searched.json()["entry"]] == [made["id"]]

    resource["gender"] = "female"
    resource["name"][0]["period"] = {"start": "2001-01-01"}
    resource["telecom"].append({"system": "fax", "value": "+234 1 555 0000"})
    put = await fhir.put(f"/Practitioner/{made['id']}", json=resource)
    assert put.status_code == 200, put.text
    changed = await client.patch(
        f"/api/v1/practitioners/{made['id']}",
        json={"email": "new@example.org"},
        headers={**auth_headers(settings, "admin"), "If-Match": f'W/"{put.json()["meta"]["versionId"]}"'},
    )
    assert changed.status_code == 200, changed.text
    after = (await fhir.get(f"/Practitioner/{made['id']}")).json()
    assert (
        int(after["meta"]["versionId"])
        == int(put.json()["meta"]["versionId"]) + 1
        == changed.json()["version"]
    )
    assert after["gender"] == "female"
    assert after["name"][0]["period"] == {"start": "2001-01-01"}
    telecoms = {(t["system"], t["value"]) for t in after["telecom"]}
    assert ("email", "new@example.org") in telecoms
    assert ("email", "o@example.org") not in telecoms
    assert ("fax", "+234 1 555 0000") in telecoms


async def test_a_resource_reads_back_as_it_was_sent(fhir: AsyncClient) -> None:
    sent = organization(alias=["St L"], identifier=[{"system": "urn:org", "value": "SL"}])
    created = await create(fhir, sent)
    read = (await fhir.get(f"/Organization/{created['id']}")).json()
    ours = [i for i in read["identifier"] if i["system"] == FACILITY_CODE_SYSTEM]
    assert len(ours) == 1  # the code we assigned
    assert {k: v for k, v in read.items() if k not in ("id", "meta", "identifier")} == {
        k: v for k, v in sent.items() if k != "identifier"
    }


async def test_deletes_retire_and_an_update_brings_back(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    admin = auth_headers(settings, "admin")
    doctor = await create(fhir, practitioner())
    assert (await fhir.delete(f"/Practitioner/{doctor['id']}")).status_code == 204
    assert (await fhir.get(f"/Practitioner/{doctor['id']}")).status_code == 410
    assert (await fhir.get(f"/PractitionerRole/{doctor['id']}")).status_code == 410
    row = await client.get(f"/api/v1/practitioners/{doctor['id']}", headers=admin)
    assert (row.status_code, row.json()["active"], row.json()["version"]) == (200, False, 2)
    back = await fhir.put(f"/Practitioner/{doctor['id']}", json={**practitioner(), "id": doctor["id"]})
    assert back.status_code == 201, back.text  # recreated over the tombstone
    assert back.json()["meta"]["versionId"] == "3"
    row = await client.get(f"/api/v1/practitioners/{doctor['id']}", headers=admin)
    assert (row.json()["active"], row.json()["version"]) == (True, 3)

    facility = await make_facility(client, settings)
    assert (await client.delete(f"/api/v1/facilities/{facility['id']}", headers=admin)).status_code == 204
    assert (await fhir.get(f"/Organization/{facility['id']}")).status_code == 410
    kept = (await client.get(f"/api/v1/facilities/{facility['id']}", headers=admin)).json()
    assert kept["active"] is False
    # A REST change brings a retired record back, as it is (here: still inactive).
    renamed = await client.patch(
        f"/api/v1/facilities/{facility['id']}", json={"name": "Annex"}, headers=admin
    )
    assert renamed.status_code == 200, renamed.text
    org = (await fhir.get(f"/Organization/{facility['id']}")).json()
    assert (org["name"], org["active"]) == ("Annex", False)


async def test_deleting_an_appointment_cancels_it(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    person = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    slot = ("2031-01-02T09:00:00Z", "2031-01-02T09:30:00Z")
    booked = await create(fhir, appointment(person["id"], doctor["id"], *slot))
    assert (await fhir.delete(f"/Appointment/{booked['id']}")).status_code == 204
    assert (await fhir.get(f"/Appointment/{booked['id']}")).status_code == 410
    rest = await client.get(
        f"/api/v1/appointments/{booked['id']}", headers=auth_headers(settings, "physician")
    )
    assert (rest.json()["status"], rest.json()["version"]) == ("cancelled", 2)
    assert rest.json()["cancelled_at"] is not None
    # The slot is free again.
    again = await create(fhir, appointment(person["id"], doctor["id"], *slot))
    logged = await phi_rows(database_url, resource_type="Appointment", channel="fhir")
    assert [
        (r["action"], r["resource_id"], str(r["patient_id"])) for r in logged if r["action"] != "read"
    ] == [
        ("create", booked["id"], person["id"]),
        ("delete", booked["id"], person["id"]),
        ("create", again["id"], person["id"]),
    ]

    # A visit that took place cannot be cancelled, through either API.
    headers = auth_headers(settings, "physician")
    assert (
        await client.post(f"/api/v1/appointments/{again['id']}/complete", headers=headers)
    ).status_code == 200
    refused = await fhir.delete(f"/Appointment/{again['id']}")
    assert refused.status_code == 409, refused.text
    assert "invalid_transition" in codes(refused)
    cancel = await client.post(
        f"/api/v1/appointments/{again['id']}/cancel", json={"reason": "x"}, headers=headers
    )
    assert cancel.status_code == 409
    assert "invalid_transition" in codes(cancel)


async def test_fhir_status_changes_follow_the_rest_transitions(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    person = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    booked = await create(
        fhir, appointment(person["id"], doctor["id"], "2031-02-01T09:00:00Z", "2031-02-01T09:30:00Z")
    )
    arrived = await fhir.put(f"/Appointment/{booked['id']}", json={**booked, "status": "arrived"})
    assert arrived.status_code == 200, arrived.text
    rest = (
        await client.get(f"/api/v1/appointments/{booked['id']}", headers=auth_headers(settings, "physician"))
    ).json()
    assert (rest["status"], rest["checked_in_at"] is not None) == ("checked_in", True)
    moved = {**arrived.json(), "start": "2031-02-01T10:00:00Z", "end": "2031-02-01T10:30:00Z"}
    refused = await fhir.put(f"/Appointment/{booked['id']}", json=moved)
    assert refused.status_code == 409, refused.text
    assert "invalid_transition" in codes(refused)  # only a booked appointment is rescheduled
    back = await fhir.put(f"/Appointment/{booked['id']}", json={**arrived.json(), "status": "booked"})
    assert back.status_code == 409, back.text
    assert (await fhir.get(f"/Appointment/{booked['id']}")).json()["meta"]["versionId"] == "2"


async def test_out_of_scope_resources_stay_fhir_only_and_in_scope_ones_are_refused(
    fhir: AsyncClient, database_url: str
) -> None:
    before = await counts(database_url)
    # A Location no facility of ours manages is not a department; an Appointment of a patient who
    # is no record of ours is not a booking: both are kept in the FHIR store as sent.
    site = await create(fhir, {"resourceType": "Location", "name": "Patient's home", "mode": "kind"})
    await fhir.put("/Patient/example", json={"resourceType": "Patient", "id": "example"})
    doctor = await create(fhir, practitioner())
    foreign = await create(
        fhir, appointment("example", doctor["id"], "2031-01-02T09:00:00Z", "2031-01-02T09:30:00Z")
    )
    assert "identifier" not in site
    after = await counts(database_url)
    assert after["departments"] == before["departments"]
    assert after["appointments"] == before["appointments"]
    assert after["practitioners"] == before["practitioners"] + 1
    assert (await fhir.get(f"/Appointment/{foreign['id']}")).status_code == 200
    # An Organization is always a facility: without a name it is refused, not kept aside.
    assert "name" in await refused_through_fhir(
        fhir, database_url, {"resourceType": "Organization"}, 422, "required"
    )


# ---------------------------------------------------------------------------------------------
# the same rules through REST, a FHIR create and a FHIR transaction


async def test_a_facility_code_is_unique(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    await make_facility(client, settings, code="LAG-1")
    again = await client.post(
        "/api/v1/facilities", json={"code": "LAG-1", "name": "Again"}, headers=auth_headers(settings, "admin")
    )
    assert again.status_code == 409
    assert "duplicate_code" in codes(again)
    taken = organization(identifier=[{"system": FACILITY_CODE_SYSTEM, "value": "LAG-1"}])
    await refused_through_fhir(fhir, database_url, taken, 409, "duplicate_code")
    bad = organization(identifier=[{"system": FACILITY_CODE_SYSTEM, "value": "has space"}])
    assert "code" in await refused_through_fhir(fhir, database_url, bad, 422, "invalid")


async def test_a_department_code_is_unique_within_its_facility(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    admin = auth_headers(settings, "admin")
    first, second = await make_facility(client, settings), await make_facility(client, settings)
    url = f"/api/v1/facilities/{first['id']}/departments"
    assert (
        await client.post(url, json={"code": "CARD", "name": "Cardiology"}, headers=admin)
    ).status_code == 201
    again = await client.post(url, json={"code": "CARD", "name": "Again"}, headers=admin)
    assert again.status_code == 409
    assert "duplicate_code" in codes(again)
    card = [{"system": DEPARTMENT_CODE_SYSTEM, "value": "CARD"}]
    await refused_through_fhir(
        fhir, database_url, location(first["id"], identifier=card), 409, "duplicate_code"
    )
    elsewhere = await create(fhir, location(second["id"], identifier=card))
    listed = await client.get(f"/api/v1/facilities/{second['id']}/departments", headers=admin)
    assert [(d["id"], d["code"]) for d in listed.json()] == [(elsewhere["id"], "CARD")]


async def test_a_practitioner_needs_names_and_one_of_our_professions(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    rest = await client.post(
        "/api/v1/practitioners",
        json={"given_name": "", "family_name": "House", "profession": "physician"},
        headers=auth_headers(settings, "admin"),
    )
    assert rest.status_code == 422
    assert "given_name" in fields(rest)
    nameless = practitioner(name=[{"family": "House"}])
    assert "given_name" in await refused_through_fhir(fhir, database_url, nameless, 422, "required")
    wizard = practitioner(
        extension=[
            {"url": "https://hims.arocord.com/fhir/StructureDefinition/profession", "valueString": "wizard"}
        ]
    )
    assert "profession" in await refused_through_fhir(fhir, database_url, wizard, 422, "invalid")


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        ("2031-03-01T10:00:00Z", "2031-03-01T09:00:00Z", "ends_before_start"),
        ("2031-03-01T10:00:00Z", "2031-03-01T10:00:00Z", "ends_before_start"),
        ("2031-03-01T08:00:00Z", "2031-03-01T21:00:00Z", "too_long"),
    ],
)
async def test_an_appointment_ends_after_it_starts(
    fhir: AsyncClient,
    client: AsyncClient,
    settings: Settings,
    database_url: str,
    start: str,
    end: str,
    code: str,
) -> None:
    person = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    rest = await client.post(
        "/api/v1/appointments",
        json=booking(person["id"], doctor["id"], start, end),
        headers=auth_headers(settings, "receptionist"),
    )
    assert rest.status_code == 422
    assert code in codes(rest)
    resource = appointment(person["id"], doctor["id"], start, end)
    assert "ends_at" in await refused_through_fhir(fhir, database_url, resource, 422, code)


async def test_no_double_booking(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    person = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    headers = auth_headers(settings, "receptionist")
    slot = ("2031-05-06T10:00:00Z", "2031-05-06T10:30:00Z")
    booked = await client.post(
        "/api/v1/appointments", json=booking(person["id"], doctor["id"], *slot), headers=headers
    )
    assert booked.status_code == 201, booked.text
    fhir_view = (await fhir.get(f"/Appointment/{booked.json()['id']}")).json()
    assert (fhir_view["start"], fhir_view["meta"]["versionId"]) == ("2031-05-06T10:00:00Z", "1")
    found = await fhir.get("/Appointment", params={"practitioner": f"Practitioner/{doctor['id']}"})
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [booked.json()["id"]]

    overlap = ("2031-05-06T10:15:00Z", "2031-05-06T10:45:00Z")
    rest = await client.post(
        "/api/v1/appointments", json=booking(person["id"], doctor["id"], *overlap), headers=headers
    )
    assert rest.status_code == 409
    assert "double_booking" in codes(rest)
    await refused_through_fhir(
        fhir, database_url, appointment(person["id"], doctor["id"], *overlap), 409, "double_booking"
    )
    assert await phi_rows(database_url, action="create", channel="fhir") == []


async def test_an_appointment_needs_a_live_patient_and_an_active_practitioner(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    headers = auth_headers(settings, "receptionist")
    keep, merged = await make_patient(client, settings), await make_patient(client, settings)
    await merge_patients(client, settings, merged["id"], keep["id"])
    doctor = await make_practitioner(client, settings)
    resting = await make_practitioner(client, settings, given_name="Resting")
    inactive = await client.patch(
        f"/api/v1/practitioners/{resting['id']}",
        json={"active": False},
        headers=auth_headers(settings, "admin"),
    )
    assert inactive.status_code == 200, inactive.text
    slot = ("2031-06-01T09:00:00Z", "2031-06-01T09:30:00Z")
    for patient_id, practitioner_id, field, code in (
        (merged["id"], doctor["id"], "patient_id", "patient_merged"),
        (keep["id"], resting["id"], "practitioner_id", "unknown_practitioner"),
    ):
        rest = await client.post(
            "/api/v1/appointments", json=booking(patient_id, practitioner_id, *slot), headers=headers
        )
        assert rest.status_code == 422, rest.text
        assert code in codes(rest)
        resource = appointment(patient_id, practitioner_id, *slot)
        assert field in await refused_through_fhir(fhir, database_url, resource, 422, code)


# ---------------------------------------------------------------------------------------------
# references, merges and the derived PractitionerRole


async def test_transaction_bundle_links_the_rows(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    ids = {name: f"urn:uuid:{uuid.uuid4()}" for name in ("org", "loc", "doc", "appt")}
    person = await make_patient(client, settings)
    entries = [
        (ids["org"], organization()),
        (
            ids["loc"],
            {
                "resourceType": "Location",
                "name": "Clinic A",
                "managingOrganization": {"reference": ids["org"]},
            },
        ),
        (ids["doc"], practitioner()),
    ]
    slot = appointment(person["id"], "x", "2031-07-01T08:00:00Z", "2031-07-01T08:20:00Z")
    slot["participant"][1:] = [
        {"actor": {"reference": ids["doc"]}, "status": "accepted"},
        {"actor": {"reference": ids["loc"]}, "status": "accepted"},
    ]
    entries.append((ids["appt"], slot))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
            for url, res in reversed(entries)
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    made = {
        url: e["response"]["location"].split("/")[1]
        for (url, _), e in zip(reversed(entries), response.json()["entry"], strict=True)
    }
    rest = (
        await client.get(
            f"/api/v1/appointments/{made[ids['appt']]}", headers=auth_headers(settings, "physician")
        )
    ).json()
    assert (rest["patient_id"], rest["practitioner_id"], rest["department_id"]) == (
        person["id"],
        made[ids["doc"]],
        made[ids["loc"]],
    )
    department = await client.get(
        f"/api/v1/facilities/{made[ids['org']]}/departments/{made[ids['loc']]}",
        headers=auth_headers(settings, "admin"),
    )
    assert department.status_code == 200, department.text


async def test_patient_merge_moves_the_appointment_in_both_apis(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    keep = await make_patient(client, settings)
    dupe = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    booked = await create(
        fhir, appointment(dupe["id"], doctor["id"], "2031-09-01T09:00:00Z", "2031-09-01T09:30:00Z")
    )
    await merge_patients(client, settings, dupe["id"], keep["id"])
    after = (await fhir.get(f"/Appointment/{booked['id']}")).json()
    actors = [p["actor"]["reference"] for p in after["participant"]]
    assert f"Patient/{keep['id']}" in actors
    assert f"Patient/{dupe['id']}" not in actors
    assert after["meta"]["versionId"] == "2"
    rest = await client.get(
        f"/api/v1/appointments/{booked['id']}", headers=auth_headers(settings, "physician")
    )
    assert (rest.json()["patient_id"], rest.json()["version"]) == (keep["id"], 2)
    moved = await phi_rows(database_url, action="merge", resource_type="Appointment")
    assert [(r["resource_id"], str(r["patient_id"])) for r in moved] == [(booked["id"], keep["id"])]


async def test_a_practitioners_placement_is_a_derived_practitioner_role(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    admin = auth_headers(settings, "admin")
    facility = await make_facility(client, settings)
    cardio = await client.post(
        f"/api/v1/facilities/{facility['id']}/departments",
        json={"code": "CARD", "name": "Cardiology"},
        headers=admin,
    )
    assert cardio.status_code == 201, cardio.text
    doctor = await make_practitioner(
        client,
        settings,
        facility_id=facility["id"],
        department_id=cardio.json()["id"],
        specialty="cardiology",
    )
    role = (await fhir.get(f"/PractitionerRole/{doctor['id']}")).json()
    assert role["practitioner"] == {"reference": f"Practitioner/{doctor['id']}"}
    assert role["organization"] == {"reference": f"Organization/{facility['id']}"}
    assert role["location"] == [{"reference": f"Location/{cardio.json()['id']}"}]
    assert role["code"][0]["text"] == "physician"
    assert role["specialty"] == [{"text": "cardiology"}]
    found = await fhir.get("/PractitionerRole", params={"organization": f"Organization/{facility['id']}"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [doctor["id"]]

    moved = await client.patch(
        f"/api/v1/practitioners/{doctor['id']}",
        json={"department_id": None},
        headers={**admin, "If-Match": f'W/"{doctor["version"]}"'},
    )
    assert moved.status_code == 200, moved.text
    after = (await fhir.get(f"/PractitionerRole/{doctor['id']}")).json()
    assert "location" not in after
    assert after["meta"]["versionId"] == "2"
