from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event

from tests.clinical.conftest import auth_headers
from tests.clinical.factories import make_appointment, make_clinical_history, make_patient, make_practitioner
from tests.support import phi_rows


@contextmanager
def count_statements(app: FastAPI) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(_conn, _cursor, statement, _params, _context, _many):
        statements.append(statement)

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def test_chart_has_every_section(client: AsyncClient, physician, patient_id, database_url):
    await client.post(f"/api/v1/patients/{patient_id}/conditions", json={"code": "I10"}, headers=physician)
    await client.post(
        f"/api/v1/patients/{patient_id}/allergies",
        json={"substance": "Latex", "severity": "mild"},
        headers=physician,
    )
    await client.post(
        f"/api/v1/patients/{patient_id}/prescriptions",
        json={"drug_name": "Lisinopril", "dose_value": 10, "dose_unit": "mg"},
        headers=physician,
    )
    await client.post(
        f"/api/v1/patients/{patient_id}/observations", json={"heart_rate": 70}, headers=physician
    )
    await client.post(
        f"/api/v1/patients/{patient_id}/observations", json={"heart_rate": 90}, headers=physician
    )
    await client.post(f"/api/v1/patients/{patient_id}/consultations", json={}, headers=physician)
    response = await client.get(f"/api/v1/patients/{patient_id}/chart", headers=physician)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient"]["family_name"] == "Okafor"
    assert [p["code"] for p in body["active_problems"]] == ["I10"]
    assert [a["substance"] for a in body["allergies"]] == ["Latex"]
    assert [p["drug_name"] for p in body["active_prescriptions"]] == ["Lisinopril"]
    assert [(v["code"], v["value"]) for v in body["latest_vitals"]] == [("8867-4", 90.0)]
    assert len(body["recent_consultations"]) == 1
    assert body["upcoming_appointments"] == []
    charted = await phi_rows(database_url, action="chart")
    assert [(r["resource_type"], r["patient_id"]) for r in charted] == [("Patient", patient_id)]


async def test_chart_lists_upcoming_appointments(client: AsyncClient, physician, patient_id, db):
    async with db.driver_transaction() as conn:
        doctor = await make_practitioner(conn)
        soon = await make_appointment(conn, patient_id=patient_id, practitioner_id=doctor["id"])
        await make_appointment(
            conn,
            patient_id=patient_id,
            practitioner_id=doctor["id"],
            starts_at=datetime.now(UTC) - timedelta(days=2),
        )
    body = (await client.get(f"/api/v1/patients/{patient_id}/chart", headers=physician)).json()
    assert [(a["id"], a["status"]) for a in body["upcoming_appointments"]] == [(str(soon["id"]), "booked")]


async def test_chart_runs_the_same_number_of_queries_for_1_and_50_records(
    app: FastAPI, client, physician, db, partitions
):
    async with db.driver_transaction() as conn:
        small = await make_patient(conn, family_name="Small")
        large = await make_patient(conn, family_name="Large")
        await make_clinical_history(conn, patient_id=small["id"], count=1)
        await make_clinical_history(conn, patient_id=large["id"], count=50)
    # The first authenticated request loads the caller's account status into the cache; warm it
    # so only the chart's own statements are counted.
    assert (await client.get("/api/v1/auth/me", headers=physician)).status_code == 200
    counts = {}
    for patient in (small, large):
        with count_statements(app) as statements:
            response = await client.get(f"/api/v1/patients/{patient['id']}/chart", headers=physician)
        assert response.status_code == 200
        counts[patient["family_name"]] = len(statements)
        body = response.json()
    assert counts["Small"] == counts["Large"] <= 10, counts
    assert len(body["recent_consultations"]) == 10
    assert len(body["allergies"]) == 50
    assert len(body["upcoming_appointments"]) == 10


async def test_chart_needs_clinical_read(client, settings, patient_id):
    response = await client.get(
        f"/api/v1/patients/{patient_id}/chart", headers=auth_headers(settings, "receptionist")
    )
    assert response.status_code == 403
