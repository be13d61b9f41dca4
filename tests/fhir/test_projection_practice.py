"""FHIR Organization/Location/Practitioner/Appointment and the REST facilities, departments,
practitioners and appointments are one record each, written through either API."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from hims.fhir.mappings import practitioner as practitioner_mapping
from hims.fhir.mappings.organization import FACILITY_CODE_SYSTEM
from hims.fhir.projectors.practice import merged
from hims.settings import Settings
from tests.fhir.conftest import create, patient
from tests.patients.factories import (
    auth_headers,
    make_facility,
    make_patient,
    make_practitioner,
    merge_patients,
)
from tests.support import count_rows, phi_rows


def organization(**overrides: Any) -> dict[str, Any]:
    """A minimal Organization (no facility code: the server assigns one)."""
    return {"resourceType": "Organization", "name": "St Luke Hospital", "active": True, **overrides}


def practitioner(**overrides: Any) -> dict[str, Any]:
    """A minimal Practitioner."""
    body: dict[str, Any] = {
        "resourceType": "Practitioner",
        "name": [{"family": "Bello", "given": ["Tunde"], "prefix": ["Dr"]}],
        "telecom": [{"system": "phone", "value": "+234 1 555 0199"}],
    }
    return {**body, **overrides}


def appointment(patient_id: str, practitioner_id: str, start: str, end: str) -> dict[str, Any]:
    """A booked Appointment of a patient with a practitioner."""
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{practitioner_id}"}, "status": "accepted"},
        ],
    }


async def test_fhir_organization_location_practitioner_are_domain_rows(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    headers = auth_headers(settings, "admin")
    org = await create(fhir, organization(telecom=[{"system": "phone", "value": "+44 20 7946 0000"}]))
    code = next(i["value"] for i in org["identifier"] if i["system"] == FACILITY_CODE_SYSTEM)
    facility = (await client.get(f"/api/v1/facilities/{org['id']}", headers=headers)).json()
    assert (facility["name"], facility["code"], facility["phone"]) == (
        "St Luke Hospital",
        code,
        "+44 20 7946 0000",
    )

    location = await create(
        fhir,
        {
            "resourceType": "Location",
            "name": "Cardiology",
            "managingOrganization": {"reference": f"Organization/{org['id']}", "display": "St Luke"},
        },
    )
    department = await client.get(
        f"/api/v1/facilities/{org['id']}/departments/{location['id']}", headers=headers
    )
    assert department.status_code == 200, department.text
    assert department.json()["name"] == "Cardiology"
    assert department.json()["code"].startswith("LOC-")

    doctor = await create(fhir, practitioner())
    row = (await client.get(f"/api/v1/practitioners/{doctor['id']}", headers=headers)).json()
    assert (row["given_name"], row["family_name"], row["prefix"], row["phone"]) == (
        "Tunde",
        "Bello",
        "Dr",
        "+234 1 555 0199",
    )
    assert row["active"] is True


async def test_rest_practitioner_is_fhir_and_keeps_fhir_only_elements(
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
        headers=auth_headers(settings, "admin"),
    )
    assert changed.status_code == 200, changed.text
    after = (await fhir.get(f"/Practitioner/{made['id']}")).json()
    assert int(after["meta"]["versionId"]) == int(put.json()["meta"]["versionId"]) + 1
    assert after["gender"] == "female"
    assert after["name"][0]["period"] == {"start": "2001-01-01"}
    telecoms = {(t["system"], t["value"]) for t in after["telecom"]}
    assert ("email", "new@example.org") in telecoms
    assert ("email", "o@example.org") not in telecoms
    assert ("fax", "+234 1 555 0000") in telecoms


async def test_deletes_show_on_both_sides(fhir: AsyncClient, client: AsyncClient, settings: Settings) -> None:
    headers = auth_headers(settings, "admin")
    by_fhir = await create(fhir, practitioner())
    assert (await fhir.delete(f"/Practitioner/{by_fhir['id']}")).status_code == 204
    row = (await client.get(f"/api/v1/practitioners/{by_fhir['id']}", headers=headers)).json()
    assert row["active"] is False

    facility = await make_facility(client, settings)
    assert (await client.delete(f"/api/v1/facilities/{facility['id']}", headers=headers)).status_code == 204
    org = (await fhir.get(f"/Organization/{facility['id']}")).json()
    assert org["active"] is False

    person = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    booked = await create(
        fhir, appointment(person["id"], doctor["id"], "2031-01-02T09:00:00Z", "2031-01-02T09:30:00Z")
    )
    assert (await fhir.delete(f"/Appointment/{booked['id']}")).status_code == 204
    rest = await client.get(
        f"/api/v1/appointments/{booked['id']}", headers=auth_headers(settings, "physician")
    )
    assert rest.json()["status"] == "cancelled"
    # The slot is free again.
    await create(
        fhir, appointment(person["id"], doctor["id"], "2031-01-02T09:00:00Z", "2031-01-02T09:30:00Z")
    )


async def test_unprojectable_resources_stay_fhir_only(fhir: AsyncClient, database_url: str) -> None:
    tables = ("facilities", "practitioners", "departments", "appointments")
    before = {t: await count_rows(database_url, t) for t in tables}
    await create(fhir, {"resourceType": "Practitioner", "active": True})  # no name
    nameless = await create(fhir, {"resourceType": "Organization", "active": True})
    await create(
        fhir,
        {
            "resourceType": "Location",
            "name": "Ward 3",
            "managingOrganization": {"reference": f"Organization/{nameless['id']}"},
        },
    )
    unregistered = patient()
    del unregistered["birthDate"]
    person = await create(fhir, unregistered)
    doctor = await create(fhir, practitioner())
    await create(
        fhir, appointment(person["id"], doctor["id"], "2031-01-02T09:00:00Z", "2031-01-02T09:30:00Z")
    )
    after = {t: await count_rows(database_url, t) for t in tables}
    assert after == {**before, "practitioners": before["practitioners"] + 1}


async def test_refused_update_writes_nothing(fhir: AsyncClient, database_url: str) -> None:
    doctor = await create(fhir, practitioner())
    broken = {k: v for k, v in doctor.items() if k != "name"}
    refused = await fhir.put(f"/Practitioner/{doctor['id']}", json=broken)
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "domain_constraint"
    again = (await fhir.get(f"/Practitioner/{doctor['id']}")).json()
    assert again["meta"]["versionId"] == "1"
    assert again["name"][0]["family"] == "Bello"


async def test_double_booking_through_fhir_is_a_conflict(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    person = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    booked = await client.post(
        "/api/v1/appointments",
        json={
            "patient_id": person["id"],
            "practitioner_id": doctor["id"],
            "starts_at": "2031-05-06T10:00:00Z",
            "ends_at": "2031-05-06T10:30:00Z",
        },
        headers=auth_headers(settings, "receptionist"),
    )
    assert booked.status_code == 201, booked.text
    fhir_view = (await fhir.get(f"/Appointment/{booked.json()['id']}")).json()
    assert fhir_view["start"] == "2031-05-06T10:00:00Z"
    found = await fhir.get("/Appointment", params={"practitioner": f"Practitioner/{doctor['id']}"})
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [booked.json()["id"]]

    versions = await count_rows(database_url, "fhir_resources")
    overlap = await fhir.post(
        "/Appointment",
        json=appointment(person["id"], doctor["id"], "2031-05-06T10:15:00Z", "2031-05-06T10:45:00Z"),
    )
    assert overlap.status_code == 409, overlap.text
    assert overlap.json()["issue"][0]["details"]["coding"][0]["code"] == "double_booking"
    assert await count_rows(database_url, "appointments") == 1
    # A create runs outside a transaction: its one write statement (FHIR version, history, PHI
    # log and domain row) was refused whole.
    assert await count_rows(database_url, "fhir_resources") == versions
    assert await phi_rows(database_url, action="create", channel="fhir") == []


async def test_transaction_bundle_links_the_rows(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
) -> None:
    ids = {name: f"urn:uuid:{uuid.uuid4()}" for name in ("org", "loc", "doc", "pat", "appt")}
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
        (ids["pat"], patient()),
    ]
    booking = appointment("x", "y", "2031-07-01T08:00:00Z", "2031-07-01T08:20:00Z")
    booking["participant"] = [
        {"actor": {"reference": ids["pat"]}, "status": "accepted"},
        {"actor": {"reference": ids["doc"]}, "status": "accepted"},
        {"actor": {"reference": ids["loc"]}, "status": "accepted"},
    ]
    entries.append((ids["appt"], booking))
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
        made[ids["pat"]],
        made[ids["doc"]],
        made[ids["loc"]],
    )
    department = await client.get(
        f"/api/v1/facilities/{made[ids['org']]}/departments/{made[ids['loc']]}",
        headers=auth_headers(settings, "admin"),
    )
    assert department.status_code == 200, department.text


def test_merged_keeps_unmodelled_elements_and_drops_replaced_values() -> None:
    to_row = practitioner_mapping.to_row
    stored = practitioner(
        gender="male", telecom=[{"system": "phone", "value": "1"}, {"system": "fax", "value": "2"}]
    )
    fresh = practitioner(telecom=[{"system": "phone", "value": "3"}])
    out = merged(to_row, fresh, stored)
    assert out["gender"] == "male"
    assert out["telecom"] == [{"system": "phone", "value": "3"}, {"system": "fax", "value": "2"}]
    assert to_row(out) == to_row(fresh)


async def test_patient_merge_moves_the_fhir_appointment_too(
    fhir: AsyncClient, client: AsyncClient, settings: Settings
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
