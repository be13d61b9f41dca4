"""One rulebook: each rule refuses the same bad input the same way through REST, FHIR and a FHIR
transaction, and writes nothing.

Table-driven: every `Case` prepares what its rule needs through the REST API, then sends the same
bad input three ways — the REST endpoint, a FHIR create or update, and that FHIR request as the
entry of a transaction Bundle — and requires the same status, the same error code (the problem
body's ``code``; the OperationOutcome's first issue code) and the same field-level codes, and that
no domain row, FHIR version or PHI log row of a write appeared.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from httpx import ASGITransport, AsyncClient

from hims.fhir.mappings.patient import MRN_SYSTEM
from hims.settings import Settings
from tests.fhir.conftest import FHIR_JSON
from tests.fhir.conftest import auth as fhir_auth
from tests.patients.factories import auth_headers

LOINC = "http://loinc.org"
VITAL_SIGNS = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
    ]
}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: Domain tables and the FHIR store: none may change when a rule refuses a write.
TABLES = (
    "patients",
    "appointments",
    "consultations",
    "observations",
    "conditions",
    "allergies",
    "prescriptions",
    "allergy_overrides",
    "lab_orders",
    "fhir_resources",
    "fhir_resource_history",
)


@dataclass
class Ctx:
    """What a case's setup made (ids, resources), for its requests."""

    rest: AsyncClient
    fhir: AsyncClient
    settings: Settings
    values: dict[str, Any] = field(default_factory=dict)

    def headers(self, role: str = "physician") -> dict[str, str]:
        return auth_headers(self.settings, role)

    async def created(self, url: str, body: dict[str, Any], role: str = "physician") -> dict[str, Any]:
        response = await self.rest.post(url, json=body, headers=self.headers(role))
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result


FhirRequest = tuple[str, str, dict[str, Any]]  # method, path under /fhir/R4, resource


@dataclass
class Case:
    """One rule: its setup, the same bad input three ways, and the refusal it must get."""

    rule: str
    setup: Callable[[Ctx], Awaitable[None]]
    rest: Callable[[Ctx], tuple[str, str, dict[str, Any], str]]  # method, url, json, role
    fhir: Callable[[Ctx], Awaitable[FhirRequest]]
    status: int
    code: str
    field_codes: frozenset[str] = frozenset()


def _person(n: int = 0) -> dict[str, Any]:
    return {
        "given_name": "Chiamaka",
        "family_name": f"Eze{'x' * n}",
        "date_of_birth": "1979-04-02",
        "sex_at_birth": "female",
    }


async def _patient(ctx: Ctx) -> None:
    body = {**_person(), "family_name": f"Parity{uuid.uuid4().hex[:8]}", "date_of_birth": "1966-09-30"}
    ctx.values["patient"] = await ctx.created("/api/v1/patients", body, role="receptionist")


def _patient_resource(values: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": values["family_name"], "given": [values["given_name"]]}],
        "birthDate": values["date_of_birth"],
        "gender": values["sex_at_birth"],
        **more,
    }


def _heart_rate(ctx: Ctx, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{ctx.values['patient']['id']}"},
        "effectiveDateTime": "2026-01-05T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


# ---------------------------------------------------------------- setups


async def _registered(ctx: Ctx) -> None:
    ctx.values["person"] = _person()
    ctx.values["patient"] = await ctx.created("/api/v1/patients", ctx.values["person"], role="receptionist")


async def _allergic(ctx: Ctx) -> None:
    await _patient(ctx)
    pid = ctx.values["patient"]["id"]
    await ctx.created(f"/api/v1/patients/{pid}/allergies", {"substance": "Penicillin", "severity": "severe"})


async def _signed(ctx: Ctx) -> None:
    await _patient(ctx)
    pid = ctx.values["patient"]["id"]
    consultation = await ctx.created(f"/api/v1/patients/{pid}/consultations", {"reason": "cough"})
    signed = await ctx.rest.post(f"/api/v1/consultations/{consultation['id']}/sign", headers=ctx.headers())
    assert signed.status_code == 200, signed.text
    ctx.values["consultation"] = signed.json()


async def _resulted(ctx: Ctx) -> None:
    await _patient(ctx)
    pid = ctx.values["patient"]["id"]
    order = await ctx.created(f"/api/v1/patients/{pid}/lab-orders", {"code": "2345-7", "display": "Glucose"})
    result = {"value": 5.4, "unit": "mmol/L"}
    done = await ctx.rest.post(
        f"/api/v1/patients/{pid}/lab-orders/{order['id']}/result", json=result, headers=ctx.headers()
    )
    assert done.status_code == 200, done.text
    ctx.values["order"] = done.json()


async def _cancelled(ctx: Ctx) -> None:
    await _patient(ctx)
    pid = ctx.values["patient"]["id"]
    prescription = await ctx.created(
        f"/api/v1/patients/{pid}/prescriptions",
        {"drug_name": "Metformin", "dose_value": 500, "dose_unit": "mg"},
    )
    cancelled = await ctx.rest.patch(
        f"/api/v1/patients/{pid}/prescriptions/{prescription['id']}",
        json={"status": "cancelled"},
        headers=ctx.headers(),
    )
    assert cancelled.status_code == 200, cancelled.text
    ctx.values["prescription"] = cancelled.json()


async def _booked(ctx: Ctx) -> None:
    await _patient(ctx)
    other = {**_person(), "family_name": f"Other{uuid.uuid4().hex[:8]}", "date_of_birth": "1950-01-01"}
    ctx.values["other"] = await ctx.created("/api/v1/patients", other, role="receptionist")
    ctx.values["practitioner"] = await ctx.created(
        "/api/v1/practitioners",
        {"given_name": "Ada", "family_name": "Lovelace", "profession": "physician"},
        role="admin",
    )
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    ctx.values["start"] = start
    await ctx.created(
        "/api/v1/appointments",
        {
            "patient_id": ctx.values["other"]["id"],
            "practitioner_id": ctx.values["practitioner"]["id"],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=30)).isoformat(),
        },
        role="receptionist",
    )


async def _fhir_read(ctx: Ctx, path: str) -> dict[str, Any]:
    response = await ctx.fhir.get(path)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _as_is(request: FhirRequest) -> FhirRequest:
    return request


# ---------------------------------------------------------------- the rules

CASES = [
    Case(
        "vital-sign range: a heart rate of 400",
        _patient,
        lambda c: (
            "POST",
            f"/api/v1/patients/{c.values['patient']['id']}/observations",
            {"heart_rate": 400},
            "physician",
        ),
        lambda c: _as_is(("POST", "/Observation", _heart_rate(c, 400))),
        422,
        "validation_failed",
        frozenset({"impossible"}),
    ),
    Case(
        "vital-sign range: a heart rate of -40",
        _patient,
        lambda c: (
            "POST",
            f"/api/v1/patients/{c.values['patient']['id']}/observations",
            {"heart_rate": -40},
            "physician",
        ),
        lambda c: _as_is(("POST", "/Observation", _heart_rate(c, -40))),
        422,
        "validation_failed",
        frozenset({"impossible"}),
    ),
    Case(
        "duplicate detection: the same person again",
        _registered,
        lambda c: ("POST", "/api/v1/patients", c.values["person"], "receptionist"),
        lambda c: _as_is(("POST", "/Patient", _patient_resource(c.values["person"]))),
        409,
        "possible_duplicates",
    ),
    Case(
        "MRN: one another patient holds",
        _registered,
        lambda c: (
            "POST",
            "/api/v1/patients",
            {
                **_person(),
                "family_name": "Unrelated",
                "date_of_birth": "2001-01-01",
                "mrn": c.values["patient"]["mrn"],
            },
            "receptionist",
        ),
        lambda c: _as_is(
            (
                "POST",
                "/Patient",
                _patient_resource(
                    {**_person(), "family_name": "Unrelated", "date_of_birth": "2001-01-01"},
                    identifier=[{"system": MRN_SYSTEM, "value": c.values["patient"]["mrn"]}],
                ),
            )
        ),
        409,
        "mrn_taken",
    ),
    Case(
        "allergy conflict: amoxicillin for a penicillin allergy",
        _allergic,
        lambda c: (
            "POST",
            f"/api/v1/patients/{c.values['patient']['id']}/prescriptions",
            {"drug_name": "Amoxicillin", "dose_value": 500, "dose_unit": "mg"},
            "physician",
        ),
        lambda c: _as_is(
            (
                "POST",
                "/MedicationRequest",
                {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {"text": "Amoxicillin"},
                    "subject": {"reference": f"Patient/{c.values['patient']['id']}"},
                    "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg"}}]}],
                },
            )
        ),
        409,
        "allergy_conflict",
    ),
    Case(
        "double booking: the practitioner's slot is taken",
        _booked,
        lambda c: (
            "POST",
            "/api/v1/appointments",
            {
                "patient_id": c.values["patient"]["id"],
                "practitioner_id": c.values["practitioner"]["id"],
                "starts_at": (c.values["start"] + timedelta(minutes=10)).isoformat(),
                "ends_at": (c.values["start"] + timedelta(minutes=40)).isoformat(),
            },
            "receptionist",
        ),
        lambda c: _as_is(
            (
                "POST",
                "/Appointment",
                {
                    "resourceType": "Appointment",
                    "status": "booked",
                    "start": (c.values["start"] + timedelta(minutes=10)).isoformat(),
                    "end": (c.values["start"] + timedelta(minutes=40)).isoformat(),
                    "participant": [
                        {
                            "actor": {"reference": f"Patient/{c.values['patient']['id']}"},
                            "status": "accepted",
                        },
                        {
                            "actor": {"reference": f"Practitioner/{c.values['practitioner']['id']}"},
                            "status": "accepted",
                        },
                    ],
                },
            )
        ),
        409,
        "double_booking",
    ),
]


async def _signed_change(ctx: Ctx) -> FhirRequest:
    encounter = await _fhir_read(ctx, f"/Encounter/{ctx.values['consultation']['id']}")
    return (
        "PUT",
        f"/Encounter/{encounter['id']}",
        {**encounter, "reasonCode": [{"text": "changed after signing"}]},
    )


async def _back_to_collected(ctx: Ctx) -> FhirRequest:
    order = await _fhir_read(ctx, f"/ServiceRequest/{ctx.values['order']['id']}")
    extension = [
        {
            "url": "https://hims.arocord.com/fhir/StructureDefinition/collected-at",
            "valueDateTime": "2026-01-01T09:00:00Z",
        }
    ]
    return "PUT", f"/ServiceRequest/{order['id']}", {**order, "status": "active", "extension": extension}


async def _reactivated(ctx: Ctx) -> FhirRequest:
    prescription = await _fhir_read(ctx, f"/MedicationRequest/{ctx.values['prescription']['id']}")
    return "PUT", f"/MedicationRequest/{prescription['id']}", {**prescription, "status": "active"}


CASES += [
    Case(
        "signed consultation: the note cannot change",
        _signed,
        lambda c: (
            "PATCH",
            f"/api/v1/consultations/{c.values['consultation']['id']}",
            {"reason": "changed after signing"},
            "physician",
        ),
        _signed_change,
        409,
        "consultation_signed",
    ),
    Case(
        "lab order: resulted cannot go back to collected",
        _resulted,
        lambda c: (
            "POST",
            f"/api/v1/patients/{c.values['patient']['id']}/lab-orders/{c.values['order']['id']}/collect",
            {},
            "physician",
        ),
        _back_to_collected,
        409,
        "invalid_transition",
    ),
    Case(
        "prescription: cancelled is final",
        _cancelled,
        lambda c: (
            "PATCH",
            f"/api/v1/patients/{c.values['patient']['id']}/prescriptions/{c.values['prescription']['id']}",
            {"status": "active"},
            "physician",
        ),
        _reactivated,
        409,
        "invalid_transition",
    ),
]


async def _snapshot(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        counts = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}
        counts["phi writes"] = int(
            await conn.fetchval(
                "SELECT count(*) FROM phi_access_log WHERE action IN ('create', 'update', 'delete')"
            )
        )
        return counts
    finally:
        await conn.close()


def _rest_codes(body: dict[str, Any]) -> tuple[str, frozenset[str]]:
    return body["code"], frozenset(e["code"] for e in body.get("errors", []))


def _fhir_codes(body: dict[str, Any]) -> tuple[str, frozenset[str]]:
    assert body["resourceType"] == "OperationOutcome", body
    codes = [i["details"]["coding"][0]["code"] for i in body["issue"]]
    return codes[0], frozenset(codes[1:])


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
async def test_a_rule_refuses_the_same_input_the_same_way_everywhere(
    app, settings, database_url, case: Case
) -> None:
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    fhir_headers = {**fhir_auth(settings, "physician"), "Content-Type": FHIR_JSON}
    async with (
        AsyncClient(transport=transport, base_url="http://testserver") as rest,
        AsyncClient(transport=transport, base_url="http://testserver/fhir/R4", headers=fhir_headers) as fhir,
    ):
        ctx = Ctx(rest, fhir, settings)
        await case.setup(ctx)
        before = await _snapshot(database_url)

        method, url, body, role = case.rest(ctx)
        answer = await rest.request(method, url, json=body, headers=ctx.headers(role))
        assert answer.status_code == case.status, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        code, fields = _rest_codes(answer.json())
        assert (code, case.field_codes <= fields) == (case.code, True), answer.text

        fhir_method, path, resource = await case.fhir(ctx)
        answer = await fhir.request(fhir_method, path, json=resource)
        assert answer.status_code == case.status, answer.text
        code, fields = _fhir_codes(answer.json())
        assert (code, case.field_codes <= fields) == (case.code, True), answer.text

        entry = {"resource": resource, "request": {"method": fhir_method, "url": path.lstrip("/")}}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        answer = await fhir.post("", json=bundle)
        assert answer.status_code == case.status, answer.text
        code, fields = _fhir_codes(answer.json())
        assert (code, case.field_codes <= fields) == (case.code, True), answer.text

        assert await _snapshot(database_url) == before


async def test_a_critical_value_gets_the_same_flag_through_every_channel(app, settings) -> None:
    """A heart rate of 35 is possible, and critically low: LL however it is recorded."""
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    fhir_headers = {**fhir_auth(settings, "physician"), "Content-Type": FHIR_JSON}
    async with (
        AsyncClient(transport=transport, base_url="http://testserver") as rest,
        AsyncClient(transport=transport, base_url="http://testserver/fhir/R4", headers=fhir_headers) as fhir,
    ):
        ctx = Ctx(rest, fhir, settings)
        await _patient(ctx)
        pid = ctx.values["patient"]["id"]
        by_rest = await ctx.created(f"/api/v1/patients/{pid}/observations", {"heart_rate": 35})
        assert by_rest[0]["interpretation"] == "LL"
        by_fhir = await fhir.post("/Observation", json=_heart_rate(ctx, 35))
        assert by_fhir.status_code == 201, by_fhir.text
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": _heart_rate(ctx, 35), "request": {"method": "POST", "url": "Observation"}}
            ],
        }
        in_bundle = await fhir.post("", json=bundle)
        assert in_bundle.status_code == 200, in_bundle.text
        created = in_bundle.json()["entry"][0]["response"]["location"].split("/_history")[0]
        for resource in (by_fhir.json(), await _fhir_read(ctx, f"/{created}")):
            assert resource["interpretation"][0]["coding"][0]["code"] == "LL"
        listed = (await rest.get(f"/api/v1/patients/{pid}/observations", headers=ctx.headers())).json()
        assert [o["interpretation"] for o in listed] == ["LL", "LL", "LL"]
