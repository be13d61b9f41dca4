from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from prometheus_client import REGISTRY

from hims.settings import Settings
from tests.clinical.conftest import auth_headers
from tests.clinical.factories import make_appointment, make_patient, make_practitioner
from tests.support import count_rows, phi_rows


def _started() -> float:
    return REGISTRY.get_sample_value("hims_consultation_started_total") or 0.0


async def test_walk_in_start_counts_metric_and_logs(client: AsyncClient, physician, patient_id, database_url):
    before = _started()
    response = await client.post(
        f"/api/v1/patients/{patient_id}/consultations", json={"reason": "cough"}, headers=physician
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "walk_in"
    assert body["status"] == "in_progress"
    assert body["appointment_id"] is None
    assert _started() == before + 1
    rows = await phi_rows(database_url, resource_type="Encounter", action="create")
    assert [(r["patient_id"], r["resource_id"]) for r in rows] == [(patient_id, body["id"])]


async def test_start_from_appointment_keeps_its_id(client: AsyncClient, physician, patient_id, db):
    async with db.driver_transaction() as conn:
        doctor = await make_practitioner(conn)
        appointment = await make_appointment(conn, patient_id=patient_id, practitioner_id=doctor["id"])
    response = await client.post(
        f"/api/v1/patients/{patient_id}/consultations",
        json={"appointment_id": str(appointment["id"])},
        headers=physician,
    )
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "appointment"
    assert response.json()["appointment_id"] == str(appointment["id"])
    again = await client.post(
        f"/api/v1/patients/{patient_id}/consultations",
        json={"appointment_id": str(appointment["id"])},
        headers=physician,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "appointment_already_started"
    assert again.json()["consultation_id"] == response.json()["id"]


async def test_concurrent_starts_from_one_appointment_make_one_consultation(
    client: AsyncClient, physician, patient_id, db, database_url
):
    async with db.driver_transaction() as conn:
        doctor = await make_practitioner(conn)
        appointment = await make_appointment(conn, patient_id=patient_id, practitioner_id=doctor["id"])
    responses = await asyncio.gather(
        *(
            client.post(
                f"/api/v1/patients/{patient_id}/consultations",
                json={"appointment_id": str(appointment["id"])},
                headers=physician,
            )
            for _ in range(5)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    assert await count_rows(database_url, "consultations") == 1


async def test_appointment_must_be_the_patients_and_live(
    client: AsyncClient, physician, patient_id, db, database_url
):
    async with db.driver_transaction() as conn:
        doctor = await make_practitioner(conn)
        other = await make_patient(conn, family_name="Other")
        theirs = await make_appointment(conn, patient_id=other["id"], practitioner_id=doctor["id"])
        cancelled = await make_appointment(
            conn,
            patient_id=patient_id,
            practitioner_id=doctor["id"],
            starts_at=datetime.now(UTC) + timedelta(days=3),
            status="cancelled",
        )
    url = f"/api/v1/patients/{patient_id}/consultations"
    for appointment_id in (uuid.uuid4(), theirs["id"]):
        refused = await client.post(url, json={"appointment_id": str(appointment_id)}, headers=physician)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "appointment_id"
    late = await client.post(url, json={"appointment_id": str(cancelled["id"])}, headers=physician)
    assert late.status_code == 409
    assert late.json()["code"] == "appointment_not_startable"
    assert await count_rows(database_url, "consultations") == 0


async def test_soap_finish_sign_then_immutable_with_amendments(
    client: AsyncClient, physician, patient_id, settings: Settings
):
    cid = (
        await client.post(f"/api/v1/patients/{patient_id}/consultations", json={}, headers=physician)
    ).json()["id"]
    note = {"subjective": "3 days of cough", "objective": "T 38.1", "assessment": "URI", "plan": "fluids"}
    edited = await client.patch(f"/api/v1/consultations/{cid}", json=note, headers=physician)
    assert edited.status_code == 200
    assert edited.json()["assessment"] == "URI"
    # An amendment is only for signed notes.
    early = await client.post(
        f"/api/v1/consultations/{cid}/amendments", json={"text": "x", "reason": "y"}, headers=physician
    )
    assert early.status_code == 409
    assert early.json()["code"] == "consultation_not_signed"
    finished = await client.post(f"/api/v1/consultations/{cid}/finish", headers=physician)
    assert finished.json()["status"] == "finished"
    assert finished.json()["finished_at"]
    # A nurse may document but not sign.
    nurse = auth_headers(settings, "nurse")
    assert (await client.post(f"/api/v1/consultations/{cid}/sign", headers=nurse)).status_code == 403
    signed = await client.post(f"/api/v1/consultations/{cid}/sign", headers=physician)
    assert signed.status_code == 200
    assert signed.json()["status"] == "signed"
    assert signed.json()["signed_by"]

    for attempt in (
        client.patch(f"/api/v1/consultations/{cid}", json={"plan": "changed"}, headers=physician),
        client.post(f"/api/v1/consultations/{cid}/finish", headers=physician),
        client.post(f"/api/v1/consultations/{cid}/sign", headers=physician),
    ):
        refused = await attempt
        assert refused.status_code == 409
        assert refused.json()["code"] == "consultation_signed"

    amendment = await client.post(
        f"/api/v1/consultations/{cid}/amendments",
        json={"text": "Temperature was 37.1, not 38.1", "reason": "transcription error"},
        headers=physician,
    )
    assert amendment.status_code == 201
    me = (await client.get("/api/v1/auth/me", headers=physician)).json()
    assert amendment.json()["author_name"] == me["username"]
    read = (await client.get(f"/api/v1/consultations/{cid}", headers=physician)).json()
    assert read["plan"] == "fluids"  # unchanged
    assert [a["reason"] for a in read["amendments"]] == ["transcription error"]
    assert read["amendments"][0]["created_at"]


async def test_stale_if_match_is_412(client: AsyncClient, physician, patient_id):
    created = await client.post(f"/api/v1/patients/{patient_id}/consultations", json={}, headers=physician)
    cid, etag = created.json()["id"], created.headers["ETag"]
    first = await client.patch(
        f"/api/v1/consultations/{cid}", json={"plan": "a"}, headers={**physician, "If-Match": etag}
    )
    assert first.status_code == 200
    assert first.headers["ETag"] != etag
    stale = await client.patch(
        f"/api/v1/consultations/{cid}", json={"plan": "b"}, headers={**physician, "If-Match": etag}
    )
    assert stale.status_code == 412


async def test_bad_input_is_refused_and_nothing_written(
    client: AsyncClient, physician, patient_id, database_url
):
    missing = await client.post(f"/api/v1/patients/{uuid.uuid4()}/consultations", json={}, headers=physician)
    assert missing.status_code == 404
    future = await client.post(
        f"/api/v1/patients/{patient_id}/consultations",
        json={"started_at": "2999-01-01T00:00:00Z"},
        headers=physician,
    )
    assert future.status_code == 422
    assert future.json()["errors"][0]["field"] == "started_at"
    practitioner = await client.post(
        f"/api/v1/patients/{patient_id}/consultations",
        json={"practitioner_id": str(uuid.uuid4())},
        headers=physician,
    )
    assert practitioner.status_code == 422
    assert practitioner.json()["errors"][0]["field"] == "practitioner_id"
    assert await count_rows(database_url, "consultations") == 0
    assert await phi_rows(database_url, resource_type="Encounter") == []


async def test_a_year_without_partition_is_a_clear_error(
    client: AsyncClient, physician, patient_id, database_url
):
    response = await client.post(
        f"/api/v1/patients/{patient_id}/consultations",
        json={"started_at": "1999-06-01T10:00:00Z"},
        headers=physician,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "partition_missing"
    assert await count_rows(database_url, "consultations") == 0
    assert await phi_rows(database_url, resource_type="Encounter") == []


async def test_list_is_newest_first_and_logged_once(client: AsyncClient, physician, patient_id, database_url):
    for started in ("2025-03-01T09:00:00Z", "2024-03-01T09:00:00Z"):
        r = await client.post(
            f"/api/v1/patients/{patient_id}/consultations", json={"started_at": started}, headers=physician
        )
        assert r.status_code == 201, r.text
    listed = await client.get(f"/api/v1/patients/{patient_id}/consultations", headers=physician)
    assert [c["started_at"][:4] for c in listed.json()] == ["2025", "2024"]
    assert "subjective" not in listed.json()[0]
    ids = {c["id"] for c in listed.json()}
    searched = await phi_rows(database_url, resource_type="Encounter", action="search")
    assert {r["resource_id"] for r in searched} == ids  # one row per consultation shown


async def test_receptionist_cannot_read_consultations(client: AsyncClient, settings, patient_id):
    headers = auth_headers(settings, "receptionist")
    response = await client.get(f"/api/v1/patients/{patient_id}/consultations", headers=headers)
    assert response.status_code == 403


async def test_started_at_defaults_to_now(client: AsyncClient, physician, patient_id):
    body = (
        await client.post(f"/api/v1/patients/{patient_id}/consultations", json={}, headers=physician)
    ).json()
    started = datetime.fromisoformat(body["started_at"])
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60
