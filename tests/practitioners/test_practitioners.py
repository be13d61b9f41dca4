from __future__ import annotations

import uuid

from tests.patients.factories import auth_headers, make_facility, make_practitioner
from tests.support import count_rows as count


async def test_facility_department_practitioner_crud(client, settings, database_url) -> None:
    admin = auth_headers(settings, "admin")
    facility = await make_facility(client, settings, code="LAG-1", name="Lagos General")
    duplicate = await client.post(
        "/api/v1/facilities", json={"code": "LAG-1", "name": "Again"}, headers=admin
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "duplicate_code"

    departments_url = f"/api/v1/facilities/{facility['id']}/departments"
    cardio = await client.post(departments_url, json={"code": "CARD", "name": "Cardiology"}, headers=admin)
    assert cardio.status_code == 201, cardio.text
    assert cardio.headers["Location"].endswith(cardio.json()["id"])
    await client.post(departments_url, json={"code": "PED", "name": "Paediatrics"}, headers=admin)
    listed = await client.get(departments_url, headers=auth_headers(settings, "receptionist"))
    assert [d["name"] for d in listed.json()] == ["Cardiology", "Paediatrics"]

    doctor = await make_practitioner(
        client,
        settings,
        prefix="Dr",
        facility_id=facility["id"],
        department_id=cardio.json()["id"],
        specialty="Cardiology",
        identifiers=[{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999999"}],
    )
    url = f"/api/v1/practitioners/{doctor['id']}"
    read = await client.get(url, headers=auth_headers(settings, "physician"))
    assert read.status_code == 200
    assert read.headers["ETag"] == 'W/"1"'
    changed = await client.patch(
        url, json={"specialty": "Interventional cardiology"}, headers={**admin, "If-Match": 'W/"1"'}
    )
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    stale = await client.patch(url, json={"specialty": "x"}, headers={**admin, "If-Match": 'W/"1"'})
    assert stale.status_code == 412

    by_department = await client.get(
        "/api/v1/practitioners", params={"department_id": cardio.json()["id"]}, headers=admin
    )
    assert [p["id"] for p in by_department.json()] == [doctor["id"]]
    by_name = await client.get("/api/v1/practitioners", params={"name": "adey"}, headers=admin)
    assert [p["id"] for p in by_name.json()] == [doctor["id"]]

    assert (await client.delete(url, headers=admin)).status_code == 204
    active = await client.get("/api/v1/practitioners", params={"active": "true"}, headers=admin)
    assert doctor["id"] not in [p["id"] for p in active.json()]
    facilities = await client.get("/api/v1/facilities", headers=admin)
    assert [f["code"] for f in facilities.json()] == ["LAG-1"]
    # Practitioners are not PHI: nothing in the PHI access log.
    assert await count(database_url, "phi_access_log") == 0


async def test_permissions_and_validation(client, settings, database_url) -> None:
    facility = await make_facility(client, settings)
    other = await make_facility(client, settings)
    other_department = (
        await client.post(
            f"/api/v1/facilities/{other['id']}/departments",
            json={"code": "ER", "name": "Emergency"},
            headers=auth_headers(settings, "admin"),
        )
    ).json()
    body = {"given_name": "A", "family_name": "B", "profession": "physician"}
    denied = await client.post(
        "/api/v1/practitioners", json=body, headers=auth_headers(settings, "physician")
    )
    assert denied.status_code == 403
    assert (
        await client.get("/api/v1/practitioners", headers=auth_headers(settings, "analyst"))
    ).status_code == 403
    for extra, field in (
        ({"profession": "wizard"}, "profession"),
        ({"facility_id": str(uuid.uuid4())}, "facility_id"),
        ({"facility_id": facility["id"], "department_id": other_department["id"]}, "department_id"),
        ({"email": "nope"}, "email"),
    ):
        response = await client.post(
            "/api/v1/practitioners", json={**body, **extra}, headers=auth_headers(settings, "admin")
        )
        assert response.status_code == 422, extra
        assert response.json()["errors"][0]["field"] == field
    assert await count(database_url, "practitioners") == 0
    missing = await client.get(
        f"/api/v1/facilities/{uuid.uuid4()}/departments", headers=auth_headers(settings, "admin")
    )
    assert missing.status_code == 404


async def test_retiring_keeps_the_record_readable_and_a_change_brings_it_back(client, settings) -> None:
    admin = auth_headers(settings, "admin")
    doctor = await make_practitioner(client, settings)
    url = f"/api/v1/practitioners/{doctor['id']}"
    assert (await client.delete(url, headers=admin)).status_code == 204
    assert (await client.delete(url, headers=admin)).status_code == 204  # retired once
    read = await client.get(url, headers=admin)
    assert (read.status_code, read.json()["active"], read.json()["version"]) == (200, False, 2)
    back = await client.patch(url, json={"active": True}, headers={**admin, "If-Match": 'W/"2"'})
    assert back.status_code == 200, back.text
    assert (back.json()["active"], back.json()["version"]) == (True, 3)
    missing = await client.delete(f"/api/v1/practitioners/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["code"] == "practitioner_not_found"
