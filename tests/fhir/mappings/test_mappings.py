"""Domain-row mappings: HL7 examples → row → resource → row is stable (lossless for modelled fields)."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from hims.fhir.mappings import location, organization, patient, practitioner

EXAMPLES = Path(__file__).parents[2] / "data" / "fhir" / "examples"


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((EXAMPLES / name).read_bytes())
    return data


def _round_trip(module: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    row = module.to_row(_example(name))
    row["id"] = uuid.uuid4()
    resource = module.to_resource(row)
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    again = module.to_row(resource)
    assert again == {k: v for k, v in row.items() if k != "id"}
    return row, resource


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("Patient-*.json")))
def test_patient_examples_round_trip(name: str) -> None:
    _round_trip(patient, name)


def test_patient_example_fields() -> None:
    row, resource = _round_trip(patient, "Patient-example.json")
    # Another system's MR number is an identifier of the patient, not our MRN.
    assert row["mrn"] is None
    assert {
        "system": "urn:oid:1.2.36.146.595.217.0.1",
        "value": "12345",
        "type": "MR",
        "use": "usual",
    } in row["identifiers"]
    assert (row["given_name"], row["middle_name"], row["family_name"]) == ("Peter", "James", "Chalmers")
    assert row["date_of_birth"] == date(1974, 12, 25)
    assert row["sex_at_birth"] == "male"
    assert row["city"] == "PleasantVille"
    assert row["emergency_contact"]["relationship"] == "N"
    assert row["deceased"] is False
    assert resource["identifier"][0]["value"] == "12345"


@pytest.mark.parametrize("name", ["Practitioner-example.json", "Practitioner-f001.json"])
def test_practitioner_examples_round_trip(name: str) -> None:
    row, _ = _round_trip(practitioner, name)
    assert row["family_name"]


@pytest.mark.parametrize("name", ["Organization-1.json", "Organization-hl7.json"])
def test_organization_examples_round_trip(name: str) -> None:
    row, _ = _round_trip(organization, name)
    assert row["name"]


def test_location_round_trip_with_facility() -> None:
    facility = uuid.uuid4()
    example = {
        **_example("Location-1.json"),
        "managingOrganization": {"reference": f"Organization/{facility}"},
        "identifier": [{"system": location.DEPARTMENT_CODE_SYSTEM, "value": "CARD"}],
    }
    row = location.to_row(example)
    assert row == {
        "code": "CARD",
        "name": "South Wing, second floor",
        "facility_id": facility,
        "active": True,
    }
    resource = location.to_resource({**row, "id": uuid.uuid4()})
    get_fhir_model_class("Location").model_validate(resource)
    assert location.to_row(resource) == row


def _sent(name: str) -> dict[str, Any]:
    """An example as a client sends it to be stored (without what the store owns)."""
    return {k: v for k, v in _example(name).items() if k not in ("id", "meta", "text")}


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (organization, "Organization-1.json"),
        (organization, "Organization-hl7.json"),
        (practitioner, "Practitioner-example.json"),
        (practitioner, "Practitioner-f001.json"),
    ],
)
def test_a_row_renders_back_what_the_client_sent(module: Any, name: str) -> None:
    sent = _sent(name)
    row = {**module.to_row(sent), "id": uuid.uuid4()}
    if module is organization:
        row["code"] = "ORG-1"  # assigned by the facilities service: a server-added identifier
    resource = module.to_resource(row, extra=module.extra(sent))
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    others = [
        i for i in resource.get("identifier", []) if i.get("system") != organization.FACILITY_CODE_SYSTEM
    ]
    assert others == sent.get("identifier", [])
    assert {k: v for k, v in resource.items() if k not in ("id", "identifier")} == {
        k: v for k, v in sent.items() if k != "identifier"
    }


def test_a_rest_change_keeps_what_the_client_sent_and_drops_what_the_row_contradicts() -> None:
    sent = {
        "resourceType": "Practitioner",
        "name": [{"family": "Bello", "given": ["Tunde"], "prefix": ["Dr"], "period": {"start": "2001"}}],
        "gender": "male",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "fax", "value": "2"}],
    }
    row = {**practitioner.to_row(sent), "id": uuid.uuid4(), "phone": "3", "profession": "nurse"}
    out = practitioner.to_resource(row, extra=practitioner.extra(sent))
    assert out["gender"] == "male"
    assert out["name"] == sent["name"]  # the richer original form of the row's name
    assert out["telecom"] == [{"system": "phone", "value": "3"}, {"system": "fax", "value": "2"}]
    assert {"url": practitioner.PROFESSION_URL, "valueString": "nurse"} in out["extension"]
    assert practitioner.to_row(out) == {k: v for k, v in row.items() if k != "id"}


def test_elements_the_row_adds_are_left_out_until_the_row_needs_them() -> None:
    sent = {"resourceType": "Organization", "name": "Clinic"}
    row = {**organization.to_row(sent), "id": uuid.uuid4(), "code": "C-1"}
    kept = organization.to_resource(row, extra=organization.extra(sent))
    assert set(kept) == {"resourceType", "id", "identifier", "name"}  # no default type, no active
    retired = organization.to_resource({**row, "active": False}, extra=organization.extra(sent))
    assert retired["active"] is False
    # Without what a client sent (a record made through REST), the row's rendering is whole.
    assert {"active", "type"} <= set(organization.to_resource(row))


def test_audit_event_from_phi_log_row() -> None:
    from datetime import UTC, datetime

    from hims.fhir.mappings import audit_event

    patient_id = uuid.uuid4()
    row = {
        "id": 7,
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "user_id": uuid.uuid4(),
        "username": "dr.who",
        "patient_id": patient_id,
        "action": "read",
        "resource_type": "Observation",
        "resource_id": "Observation/42",
        "ip_address": "10.0.0.1",
        "request_id": "r1",
        "channel": "fhir",
        "outcome": "success",
    }
    resource = audit_event.to_resource(row)
    get_fhir_model_class("AuditEvent").model_validate(resource)
    assert resource["action"] == "R"
    assert resource["recorded"] == "2026-01-02T03:04:05Z"
    assert resource["entity"][0]["what"]["reference"] == f"Patient/{patient_id}"
    assert resource["entity"][1]["what"]["reference"] == "Observation/42"
