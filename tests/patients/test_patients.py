from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hims.patients.mrn import format_mrn, is_valid_mrn, luhn_check_digit
from tests.conftest import serve_in_process
from tests.patients.factories import auth_headers, make_patient, patient_body
from tests.support import count_rows as count
from tests.support import phi_rows


def test_mrn_has_a_luhn_check_digit() -> None:
    assert luhn_check_digit("7992739871") == 3  # the textbook example
    mrn = format_mrn(100001)
    assert mrn == "000100001" + str(luhn_check_digit("000100001"))
    assert is_valid_mrn(mrn)
    wrong = mrn[:-1] + str((int(mrn[-1]) + 1) % 10)
    assert not is_valid_mrn(wrong)
    assert not is_valid_mrn("12345")


async def test_create_read_with_etag_location_and_phi_log(client, settings, database_url) -> None:
    headers = auth_headers(settings, "receptionist")
    response = await client.post("/api/v1/patients", json=patient_body(given_name="Zoë"), headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert is_valid_mrn(created["mrn"])
    assert response.headers["Location"] == f"/api/v1/patients/{created['id']}"
    assert response.headers["ETag"] == 'W/"1"'

    read = await client.get(response.headers["Location"], headers=auth_headers(settings, "physician"))
    assert read.status_code == 200
    assert read.headers["ETag"] == 'W/"1"'
    assert read.json()["given_name"] == "Zoë"

    rows = await phi_rows(database_url, patient_id=uuid.UUID(created["id"]))
    assert [r["action"] for r in rows] == ["create", "read"]
    assert all(r["resource_type"] == "Patient" and r["channel"] == "rest" for r in rows)
    assert str(rows[0]["ip_address"]) == "127.0.0.1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("date_of_birth", (datetime.now(UTC).date() + timedelta(days=2)).isoformat()),
        ("date_of_birth", "1899-12-31"),
        ("sex_at_birth", "robot"),
        ("email", "not-an-email"),
        ("phone", "call me"),
        ("country", "XX"),
        ("country", "gb"),
        ("deceased_at", "1970-01-01T00:00:00Z"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    client, settings, database_url, field, value
):
    body = patient_body(date_of_birth="1984-03-12")
    body[field] = value
    if field == "deceased_at":
        body["deceased"] = True
    response = await client.post(
        "/api/v1/patients", json=body, headers=auth_headers(settings, "receptionist")
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert field in [e["field"] for e in problem["errors"]]
    assert await count(database_url, "patients") == 0
    assert await count(database_url, "phi_access_log") == 0


async def test_update_needs_if_match_and_refuses_stale_versions(client, settings, database_url) -> None:
    headers = auth_headers(settings, "nurse")
    patient = await make_patient(client, settings)
    url = f"/api/v1/patients/{patient['id']}"

    missing = await client.patch(url, json={"city": "Lagos"}, headers=headers)
    assert missing.status_code == 428
    assert missing.json()["code"] == "precondition_required"

    ok = await client.patch(url, json={"city": "Lagos"}, headers={**headers, "If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.json()["city"] == "Lagos"
    assert ok.headers["ETag"] == 'W/"2"'

    stale = await client.patch(url, json={"city": "Abuja"}, headers={**headers, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["code"] == "version_mismatch"
    assert (await client.get(url, headers=headers)).json()["city"] == "Lagos"

    bad = await client.patch(
        url, json={"date_of_birth": "2999-01-01"}, headers={**headers, "If-Match": 'W/"2"'}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "date_of_birth"
    actions = [r["action"] for r in await phi_rows(database_url, patient_id=uuid.UUID(patient["id"]))]
    assert actions.count("update") == 1


async def test_soft_delete_hides_the_patient(client, settings) -> None:
    headers = auth_headers(settings, "receptionist")
    patient = await make_patient(client, settings, family_name="Vanishing")
    url = f"/api/v1/patients/{patient['id']}"
    assert (await client.delete(url, headers={**headers, "If-Match": 'W/"9"'})).status_code == 412
    assert (await client.delete(url, headers=headers)).status_code == 204
    gone = await client.get(url, headers=headers)
    assert gone.status_code == 410
    assert gone.json()["code"] == "patient_deleted"
    search = await client.get("/api/v1/patients", params={"family": "vanish"}, headers=headers)
    assert search.json()["items"] == []
    assert (await client.get(f"/api/v1/patients/{uuid.uuid4()}", headers=headers)).status_code == 404


async def test_role_without_permission_is_refused(client, settings, database_url) -> None:
    patient = await make_patient(client, settings)
    for method, url in (
        ("GET", f"/api/v1/patients/{patient['id']}"),
        ("GET", "/api/v1/patients?family=ok"),
        ("POST", "/api/v1/patients"),
    ):
        response = await client.request(
            method, url, json=patient_body(), headers=auth_headers(settings, "analyst")
        )
        assert response.status_code == 403, (method, url)
        assert response.json()["code"] == "permission_denied"
    assert (await client.get(f"/api/v1/patients/{patient['id']}")).status_code == 401
    # Nothing was read: beyond the factory's create, only the refused read of that patient is
    # logged (outcome denied); the refused search and create name no patient.
    assert [(r["action"], r["outcome"]) for r in await phi_rows(database_url)] == [
        ("create", "success"),
        ("read", "denied"),
    ]


async def test_concurrent_updates_of_one_version_one_wins(settings, database_url) -> None:
    async with serve_in_process(settings) as http:
        patient = await make_patient(http, settings)
        headers = {**auth_headers(settings, "nurse"), "If-Match": 'W/"1"'}
        url = f"/api/v1/patients/{patient['id']}"
        responses = await asyncio.gather(
            *(http.patch(url, json={"city": f"City {i}"}, headers=headers) for i in range(5))
        )
    assert sorted(r.status_code for r in responses) == [200, 412, 412, 412, 412]
    rows = await phi_rows(database_url, action="update")
    assert len(rows) == 1


async def test_denied_read_of_a_patient_is_in_the_phi_access_log(client, settings, database_url):
    patient = await make_patient(client, settings)
    response = await client.get(
        f"/api/v1/patients/{patient['id']}", headers=auth_headers(settings, "analyst")
    )
    assert response.status_code == 403
    denied = await phi_rows(database_url, patient_id=uuid.UUID(patient["id"]), outcome="denied")
    assert len(denied) == 1
    assert denied[0]["action"] == "read"
    assert denied[0]["username"].startswith("test-analyst")
