"""One record, one version: a clinical record's REST ETag and its FHIR versionId are the same
counter, so If-Match read from one API works against the other, and a stale one fails on both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.fhir.conftest import FHIR_JSON, auth
from tests.identity.factories import role_headers
from tests.patients.factories import make_patient


@dataclass(frozen=True)
class Kind:
    """A record type: how REST creates one, reads one, and changes one (with If-Match)."""

    fhir_type: str
    create: tuple[str, dict[str, Any]]  # path under /api/v1/patients/{pid}, body
    read: str  # REST path of one record ({pid}, {id})
    change: tuple[str, str, dict[str, Any]]  # method, path ({pid}, {id}), body


KINDS = {
    "consultation": Kind(
        "Encounter",
        ("consultations", {"reason": "cough"}),
        "/api/v1/consultations/{id}",
        ("PATCH", "/api/v1/consultations/{id}", {"plan": "rest and fluids"}),
    ),
    "condition": Kind(
        "Condition",
        ("conditions", {"code": "I10"}),
        "/api/v1/patients/{pid}/conditions/{id}",
        ("PATCH", "/api/v1/patients/{pid}/conditions/{id}", {"note": "well controlled"}),
    ),
    "allergy": Kind(
        "AllergyIntolerance",
        ("allergies", {"substance": "Latex", "severity": "mild"}),
        "/api/v1/patients/{pid}/allergies/{id}",
        ("PATCH", "/api/v1/patients/{pid}/allergies/{id}", {"severity": "moderate"}),
    ),
    "prescription": Kind(
        "MedicationRequest",
        ("prescriptions", {"drug_name": "Metformin", "dose_value": 500, "dose_unit": "mg"}),
        "/api/v1/patients/{pid}/prescriptions/{id}",
        ("PATCH", "/api/v1/patients/{pid}/prescriptions/{id}", {"status": "completed"}),
    ),
    "lab order": Kind(
        "ServiceRequest",
        ("lab-orders", {"code": "2345-7", "display": "Glucose"}),
        "/api/v1/patients/{pid}/lab-orders/{id}",
        ("POST", "/api/v1/patients/{pid}/lab-orders/{id}/collect", {}),
    ),
}


@pytest.mark.parametrize("name", list(KINDS))
async def test_if_match_from_one_api_works_against_the_other(
    name: str, client: AsyncClient, settings, partitions
) -> None:
    kind = KINDS[name]
    physician = role_headers(settings, "physician")
    fhir = {**auth(settings, "physician"), "Content-Type": FHIR_JSON}
    pid = (await make_patient(client, settings))["id"]
    path, body = kind.create
    created = await client.post(f"/api/v1/patients/{pid}/{path}", json=body, headers=physician)
    assert created.status_code == 201, created.text
    record = created.json()["id"]
    rest_path = kind.read.format(pid=pid, id=record)
    method, change_path, change_body = kind.change

    async def change(if_match: str) -> Response:
        return await client.request(
            method,
            change_path.format(pid=pid, id=record),
            json=change_body,
            headers={**physician, "If-Match": if_match},
        )

    async def rest_version() -> str:
        read = await client.get(rest_path, headers=physician)
        assert read.status_code == 200, read.text
        return read.headers["ETag"]

    async def fhir_read() -> dict[str, Any]:
        read = await client.get(f"/fhir/R4/{kind.fhir_type}/{record}", headers=fhir)
        assert read.status_code == 200, read.text
        return dict(read.json())

    first = await rest_version()
    resource = await fhir_read()
    assert first == f'W/"{resource["meta"]["versionId"]}"' == 'W/"1"'

    # FHIR changes the record with the ETag REST gave…
    resource["language"] = "en"
    put = await client.put(
        f"/fhir/R4/{kind.fhir_type}/{record}", json=resource, headers={**fhir, "If-Match": first}
    )
    assert put.status_code == 200, put.text
    assert put.json()["meta"]["versionId"] == "2"
    # …so REST's first ETag is stale, and FHIR's versionId is REST's ETag.
    stale = await change(first)
    assert stale.status_code == 412, stale.text
    assert await rest_version() == 'W/"2"'
    done = await change('W/"2"')
    assert done.status_code == 200, done.text
    assert done.headers["ETag"] == 'W/"3"'
    # REST's change is FHIR's next version; FHIR's older one no longer matches.
    assert (await fhir_read())["meta"]["versionId"] == "3"
    refused = await client.put(
        f"/fhir/R4/{kind.fhir_type}/{record}", json=resource, headers={**fhir, "If-Match": 'W/"2"'}
    )
    assert refused.status_code == 412, refused.text
