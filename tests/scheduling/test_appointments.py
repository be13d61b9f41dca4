from __future__ import annotations

import asyncio
import uuid

from tests.conftest import serve_in_process
from tests.patients.factories import auth_headers, make_patient, make_practitioner
from tests.support import count_rows as count
from tests.support import phi_rows


async def _setup(client, settings):
    patient = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    return patient, doctor


def _slot(patient, doctor, start="2030-03-04T09:00:00Z", end="2030-03-04T09:30:00Z", **extra):
    return {
        "patient_id": patient["id"],
        "practitioner_id": doctor["id"],
        "starts_at": start,
        "ends_at": end,
        **extra,
    }


async def test_book_and_walk_the_status_machine(client, settings, database_url) -> None:
    headers = auth_headers(settings, "receptionist")
    patient, doctor = await _setup(client, settings)
    booked = await client.post(
        "/api/v1/appointments",
        json=_slot(patient, doctor, type="telemedicine", reason="follow-up"),
        headers=headers,
    )
    assert booked.status_code == 201, booked.text
    appointment = booked.json()
    assert appointment["status"] == "booked"
    assert appointment["type"] == "telemedicine"
    url = f"/api/v1/appointments/{appointment['id']}"

    moved = await client.post(
        f"{url}/reschedule",
        json={"starts_at": "2030-03-04T10:00:00+01:00", "ends_at": "2030-03-04T10:45:00+01:00"},
        headers=headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["starts_at"].startswith("2030-03-04T09:00:00")
    checked = await client.post(f"{url}/check-in", headers={**headers, "If-Match": moved.headers["ETag"]})
    assert checked.status_code == 200
    assert checked.json()["status"] == "checked_in"
    assert checked.json()["checked_in_at"]
    no_show = await client.post(f"{url}/no-show", headers=headers)
    assert no_show.status_code == 409
    assert no_show.json()["code"] == "invalid_transition"
    done = await client.post(f"{url}/complete", headers=auth_headers(settings, "physician"))
    assert done.json()["status"] == "completed"
    cancel = await client.post(f"{url}/cancel", json={"reason": "too late"}, headers=headers)
    assert cancel.status_code == 409
    extra = await client.post(f"{url}/reschedule", json=_slot(patient, doctor), headers=headers)
    assert extra.status_code == 422  # unknown fields are refused

    logged = await phi_rows(database_url, resource_type="Appointment")
    assert [r["action"] for r in logged] == ["create", "reschedule", "check_in", "complete"]
    assert {(str(r["patient_id"]), r["resource_id"]) for r in logged} == {(patient["id"], appointment["id"])}
    read = await client.get(url, headers=headers)
    assert (read.headers["ETag"], read.json()["version"]) == ('W/"4"', 4)


async def test_cancel_and_no_show_release_the_slot(client, settings) -> None:
    headers = auth_headers(settings, "receptionist")
    patient, doctor = await _setup(client, settings)
    first = (await client.post("/api/v1/appointments", json=_slot(patient, doctor), headers=headers)).json()
    taken = await client.post("/api/v1/appointments", json=_slot(patient, doctor), headers=headers)
    assert taken.status_code == 409
    assert taken.json()["code"] == "double_booking"
    overlap = await client.post(
        "/api/v1/appointments",
        json=_slot(patient, doctor, "2030-03-04T09:29:00Z", "2030-03-04T10:00:00Z"),
        headers=headers,
    )
    assert overlap.status_code == 409
    adjacent = await client.post(
        "/api/v1/appointments",
        json=_slot(patient, doctor, "2030-03-04T09:30:00Z", "2030-03-04T10:00:00Z"),
        headers=headers,
    )
    assert adjacent.status_code == 201  # ranges are [start, end): back-to-back is fine
    cancelled = await client.post(
        f"/api/v1/appointments/{first['id']}/cancel", json={"reason": "patient called"}, headers=headers
    )
    assert cancelled.json()["cancel_reason"] == "patient called"
    rebooked = await client.post("/api/v1/appointments", json=_slot(patient, doctor), headers=headers)
    assert rebooked.status_code == 201
    assert (
        await client.post(f"/api/v1/appointments/{rebooked.json()['id']}/no-show", headers=headers)
    ).json()["status"] == "no_show"
    assert (
        await client.post("/api/v1/appointments", json=_slot(patient, doctor), headers=headers)
    ).status_code == 201
    other_doctor = await make_practitioner(client, settings, given_name="Other")
    assert (
        await client.post("/api/v1/appointments", json=_slot(patient, other_doctor), headers=headers)
    ).status_code == 201


async def test_bad_times_and_unknown_references_are_422(client, settings, database_url) -> None:
    headers = auth_headers(settings, "receptionist")
    patient, doctor = await _setup(client, settings)
    cases = [
        (_slot(patient, doctor, "2030-03-04T10:00:00Z", "2030-03-04T09:00:00Z"), "ends_at"),
        (_slot(patient, doctor, "2030-03-04T10:00:00Z", "2030-03-04T10:00:00Z"), "ends_at"),
        (_slot(patient, doctor, "2030-03-04T10:00:00", "2030-03-04T11:00:00"), "starts_at"),
        ({**_slot(patient, doctor), "patient_id": str(uuid.uuid4())}, "patient_id"),
        ({**_slot(patient, doctor), "practitioner_id": str(uuid.uuid4())}, "practitioner_id"),
        ({**_slot(patient, doctor), "type": "carrier_pigeon"}, "type"),
        ({**_slot(patient, doctor), "facility_id": str(uuid.uuid4())}, "facility_id"),
        ({**_slot(patient, doctor), "department_id": str(uuid.uuid4())}, "department_id"),
    ]
    for body, field in cases:
        response = await client.post("/api/v1/appointments", json=body, headers=headers)
        assert response.status_code == 422, (field, response.text)
        assert field in [e["field"] for e in response.json()["errors"]]
    assert await count(database_url, "appointments") == 0


async def test_lists_by_day_practitioner_and_patient(client, settings, database_url) -> None:
    headers = auth_headers(settings, "receptionist")
    patient, doctor = await _setup(client, settings)
    other = await make_patient(client, settings)
    for start, who in (
        ("2030-05-01T08:00:00Z", patient),
        ("2030-05-01T22:30:00Z", other),
        ("2030-05-02T08:00:00Z", patient),
    ):
        end = start.replace(":00:00Z", ":20:00Z").replace(":30:00Z", ":50:00Z")
        assert (
            await client.post("/api/v1/appointments", json=_slot(who, doctor, start, end), headers=headers)
        ).status_code == 201
    day = await client.get("/api/v1/appointments", params={"date": "2030-05-01"}, headers=headers)
    assert len(day.json()["items"]) == 2
    # In Tokyo (UTC+9) 22:30 UTC on 1 May is already 2 May.
    tokyo = await client.get(
        "/api/v1/appointments", params={"date": "2030-05-02", "tz": "Asia/Tokyo"}, headers=headers
    )
    assert [a["starts_at"][:16] for a in tokyo.json()["items"]] == ["2030-05-01T22:30", "2030-05-02T08:00"]
    by_patient = await client.get(
        "/api/v1/appointments", params={"patient_id": patient["id"]}, headers=headers
    )
    assert len(by_patient.json()["items"]) == 2
    paged = await client.get(
        "/api/v1/appointments", params={"practitioner_id": doctor["id"], "limit": 2}, headers=headers
    )
    assert len(paged.json()["items"]) == 2
    assert paged.json()["next_cursor"]
    rest = await client.get(
        "/api/v1/appointments",
        params={"practitioner_id": doctor["id"], "limit": 2, "cursor": paged.json()["next_cursor"]},
        headers=headers,
    )
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None
    bad_tz = await client.get(
        "/api/v1/appointments", params={"date": "2030-05-02", "tz": "Mars/Olympus"}, headers=headers
    )
    assert bad_tz.status_code == 422
    assert (
        await client.get("/api/v1/appointments", headers=auth_headers(settings, "analyst"))
    ).status_code == 403
    searched = await phi_rows(database_url, action="search", resource_type="Appointment")
    assert len(searched) == 2 + 2 + 2 + 2 + 1


async def test_ten_concurrent_bookings_of_one_slot_exactly_one_wins(settings, database_url) -> None:
    async with serve_in_process(settings) as http:
        patient = await make_patient(http, settings)
        doctor = await make_practitioner(http, settings)
        headers = auth_headers(settings, "receptionist")
        responses = await asyncio.gather(
            *(
                http.post("/api/v1/appointments", json=_slot(patient, doctor), headers=headers)
                for _ in range(10)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses if r.status_code not in (201, 409)]
    assert all(r.json()["code"] == "double_booking" for r in responses if r.status_code == 409)
    assert await count(database_url, "appointments") == 1


async def test_a_retired_practitioner_cannot_be_booked(client, settings, database_url) -> None:
    patient, doctor = await _setup(client, settings)
    retired = await client.delete(
        f"/api/v1/practitioners/{doctor['id']}", headers=auth_headers(settings, "admin")
    )
    assert retired.status_code == 204
    refused = await client.post(
        "/api/v1/appointments", json=_slot(patient, doctor), headers=auth_headers(settings, "receptionist")
    )
    assert refused.status_code == 422
    assert [e["code"] for e in refused.json()["errors"]] == ["unknown_practitioner"]
    assert await count(database_url, "appointments") == 0
