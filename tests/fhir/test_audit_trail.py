"""The PHI access log through FHIR's many-resource paths: a transaction bundle logs one row per
entry that touches a patient (channel ``bundle``), and compartment searches name the patient."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from hims.settings import Settings
from tests.fhir.conftest import create, patient
from tests.fhir.test_projection_practice import appointment
from tests.patients.factories import make_patient, make_practitioner
from tests.support import phi_rows


def _row(r) -> tuple[str, str, str | None, str | None]:
    return (
        r["action"],
        r["resource_type"],
        r["resource_id"],
        str(r["patient_id"]) if r["patient_id"] else None,
    )


async def test_a_transaction_logs_one_row_per_entry_that_touches_a_patient(
    fhir: AsyncClient, database_url: str, partitions: str
) -> None:
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    started = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": patient_urn, "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {
                    "resourceType": "Encounter",
                    "status": "in-progress",
                    "class": {"code": "AMB"},
                    "subject": {"reference": patient_urn},
                    "period": {"start": started},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": {"resourceType": "Organization", "name": "Not patient data"},
                "request": {"method": "POST", "url": "Organization"},
            },
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    ids = [e["response"]["location"].split("/")[1] for e in response.json()["entry"]]
    pid, encounter = ids[0], ids[1]
    logged = await phi_rows(database_url, channel="bundle")
    assert sorted(_row(r) for r in logged) == sorted(
        [("create", "Patient", pid, pid), ("create", "Encounter", encounter, pid)]
    )
    assert await phi_rows(database_url, resource_type="Bundle") == []


async def test_compartment_searches_name_the_patient(
    fhir: AsyncClient, client: AsyncClient, settings: Settings, database_url: str
) -> None:
    person = await make_patient(client, settings)
    doctor = await make_practitioner(client, settings)
    booked = await create(
        fhir, appointment(person["id"], doctor["id"], "2031-03-04T09:00:00Z", "2031-03-04T09:30:00Z")
    )
    before = len(await phi_rows(database_url))

    found = await fhir.get("/Appointment", params={"patient": person["id"]})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [booked["id"]]
    everything = await fhir.get(f"/Patient/{person['id']}/$everything")
    types = {e["resource"]["resourceType"] for e in everything.json()["entry"]}
    assert {"Patient", "Appointment"} <= types

    rows = (await phi_rows(database_url))[before:]
    assert rows, "the searches wrote no log rows"
    # Every row names the patient; the search's names the appointment it showed.
    assert {str(r["patient_id"]) for r in rows} == {person["id"]}
    assert ("search", "Appointment", booked["id"], person["id"]) in [_row(r) for r in rows]
    assert ("Appointment", booked["id"]) in {
        (r["resource_type"], r["resource_id"]) for r in rows if r["action"] != "search"
    }
