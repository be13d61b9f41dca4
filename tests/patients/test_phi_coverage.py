"""Every patient-data route of this domain writes PHI access log rows (issue: "no route may read PHI
without it"). The test enumerates the app's routes, so a new route without a case here fails."""

from __future__ import annotations

import subprocess
import sys

from hims.ops import migrate
from tests.patients.factories import auth_headers, make_patient, make_practitioner
from tests.support import count_rows as count

PATIENT_DATA_PREFIXES = ("/api/v1/patients", "/api/v1/appointments", "/api/v1/documents")


async def test_every_patient_data_route_writes_phi_log_rows(app, client, settings, database_url) -> None:
    # The OpenAPI document lists every mounted route (included routers are not flat in app.routes).
    # Consultation and clinical-record routes are covered by tests/clinical/test_phi_log.py.
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(PATIENT_DATA_PREFIXES)
        for method, operation in operations.items()
        if not {"consultations", "clinical"} & set(operation.get("tags", []))
    }
    staff = auth_headers(settings, "physician")
    clerk = auth_headers(settings, "receptionist")
    patient = await make_patient(client, settings)
    survivor = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    pid = patient["id"]
    state: dict[str, str] = {}

    async def book():
        body = {
            "patient_id": pid,
            "practitioner_id": doctor["id"],
            "starts_at": f"2031-01-{len(state) + 1:02d}T09:00:00Z",
            "ends_at": f"2031-01-{len(state) + 1:02d}T09:30:00Z",
        }
        response = await client.post("/api/v1/appointments", json=body, headers=clerk)
        state[f"appt{len(state)}"] = response.json()["id"]
        return response

    async def new_appointment() -> str:
        await book()
        return state[f"appt{len(state) - 1}"]

    async def upload():
        response = await client.post(
            f"/api/v1/patients/{pid}/documents",
            files={"file": ("a.txt", b"hello", "text/plain")},
            headers=staff,
        )
        state["doc"] = response.json()["id"]
        return response

    async def new_document() -> str:
        await upload()
        return state["doc"]

    cases = {
        ("POST", "/api/v1/patients"): lambda: client.post(
            "/api/v1/patients?allow_duplicate=true",
            json={
                "given_name": "A",
                "family_name": "B",
                "date_of_birth": "2000-01-01",
                "sex_at_birth": "male",
            },
            headers=clerk,
        ),
        ("GET", "/api/v1/patients"): lambda: client.get(
            "/api/v1/patients", params={"family": "o"}, headers=clerk
        ),
        ("GET", "/api/v1/patients/{patient_id}"): lambda: client.get(
            f"/api/v1/patients/{pid}", headers=clerk
        ),
        ("PATCH", "/api/v1/patients/{patient_id}"): lambda: client.patch(
            f"/api/v1/patients/{pid}", json={"city": "Ibadan"}, headers={**clerk, "If-Match": "*"}
        ),
        ("POST", "/api/v1/appointments"): book,
        ("GET", "/api/v1/appointments"): lambda: client.get(
            "/api/v1/appointments", params={"patient_id": pid}, headers=clerk
        ),
        ("GET", "/api/v1/appointments/{appointment_id}"): lambda: _then(
            new_appointment, lambda a: client.get(f"/api/v1/appointments/{a}", headers=clerk)
        ),
        ("POST", "/api/v1/appointments/{appointment_id}/reschedule"): lambda: _then(
            new_appointment,
            lambda a: client.post(
                f"/api/v1/appointments/{a}/reschedule",
                json={"starts_at": "2031-02-01T09:00:00Z", "ends_at": "2031-02-01T09:10:00Z"},
                headers=clerk,
            ),
        ),
        ("POST", "/api/v1/appointments/{appointment_id}/cancel"): lambda: _then(
            new_appointment,
            lambda a: client.post(f"/api/v1/appointments/{a}/cancel", json={"reason": "x"}, headers=clerk),
        ),
        ("POST", "/api/v1/appointments/{appointment_id}/check-in"): lambda: _then(
            new_appointment, lambda a: client.post(f"/api/v1/appointments/{a}/check-in", headers=clerk)
        ),
        ("POST", "/api/v1/appointments/{appointment_id}/no-show"): lambda: _then(
            new_appointment, lambda a: client.post(f"/api/v1/appointments/{a}/no-show", headers=clerk)
        ),
        ("POST", "/api/v1/appointments/{appointment_id}/complete"): lambda: _then(
            new_appointment, lambda a: client.post(f"/api/v1/appointments/{a}/complete", headers=clerk)
        ),
        ("POST", "/api/v1/patients/{patient_id}/documents"): upload,
        ("GET", "/api/v1/patients/{patient_id}/documents"): lambda: client.get(
            f"/api/v1/patients/{pid}/documents", headers=staff
        ),
        ("GET", "/api/v1/documents/{document_id}"): lambda: _then(
            new_document, lambda d: client.get(f"/api/v1/documents/{d}", headers=staff)
        ),
        ("GET", "/api/v1/documents/{document_id}/content"): lambda: _then(
            new_document, lambda d: client.get(f"/api/v1/documents/{d}/content", headers=staff)
        ),
        ("DELETE", "/api/v1/documents/{document_id}"): lambda: _then(
            new_document, lambda d: client.delete(f"/api/v1/documents/{d}", headers=staff)
        ),
        ("POST", "/api/v1/patients/{patient_id}/merge"): lambda: client.post(
            f"/api/v1/patients/{pid}/merge", json={"into": survivor["id"]}, headers=clerk
        ),
        ("DELETE", "/api/v1/patients/{patient_id}"): lambda: client.delete(
            f"/api/v1/patients/{survivor['id']}", headers=clerk
        ),
    }
    assert routes == set(cases), f"add a PHI case for: {sorted(routes ^ set(cases))}"
    order = [k for k in cases if k[1] != "/api/v1/patients/{patient_id}/merge" and k[0] != "DELETE"]
    order += [
        ("DELETE", "/api/v1/documents/{document_id}"),
        ("POST", "/api/v1/patients/{patient_id}/merge"),
        ("DELETE", "/api/v1/patients/{patient_id}"),
    ]
    for key in order:
        before = await count(database_url, "phi_access_log")
        response = await cases[key]()
        assert response.status_code < 300, (key, response.status_code, response.text)
        assert await count(database_url, "phi_access_log") > before, f"{key} wrote no PHI access log row"


async def _then(first, second):
    return await second(await first())


def test_models_and_migrations_agree(database_url) -> None:
    drift = migrate.verify(database_url)
    assert drift.ok, drift.problems


def test_hims_models_alone_registers_every_table() -> None:
    # `hims db verify` and Alembic import only hims.models: it must load every domain's tables.
    code = "from hims.models import metadata; print(' '.join(sorted(metadata.tables)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert {"patients", "practitioners", "facilities", "departments", "appointments", "documents"} <= set(
        output.split()
    )
