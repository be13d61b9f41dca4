"""Clinical mappings (Encounter, Observation, Condition...): lossless both ways for the modelled fields.

Rows are built as plain model instances in memory (no database): row → FHIR → row is equal for
the modelled columns, every resource validates against the R4B models, and the HL7 examples
keep their modelled elements (and the unmapped ones through ``extra``) when mapped in and back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class

from hims.fhir.mappings import encounter
from hims.fhir.mappings._common import row_of

EXAMPLES = Path(__file__).parents[2] / "data" / "fhir" / "examples"
PATIENT = uuid.uuid4()
PRACTITIONER = uuid.uuid4()
CONSULTATION = uuid.uuid4()
T0 = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
T1 = datetime(2026, 3, 4, 9, 50, 12, tzinfo=UTC)


def _example(name: str, **replace: Any) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((EXAMPLES / name).read_bytes())
    return {**data, **replace}


def _valid(resource: dict[str, Any]) -> dict[str, Any]:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def _row_round_trip(module: Any, obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """row → resource → row: every column the mapping models comes back equal."""
    row = row_of(obj)
    resource = _valid(module.to_resource(row))
    again = module.to_row(resource)
    assert again == {k: row[k] for k in again}
    assert set(again) <= set(row)
    return row, resource


def _resource_round_trip(module: Any, resource: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """resource → (row, extra) → resource: the modelled elements and the unmapped ones survive."""
    row = module.to_row(resource)
    kept = module.extra(resource)
    back = _valid(module.to_resource({**row, "id": resource.get("id")}, extra=kept))
    assert module.to_row(back) == row
    for key, value in kept.items():
        if key != "extension":
            assert back[key] == value, key
    return row, back


# --- Encounter ↔ consultations --------------------------------------------------------------------


def _consultation(**over: Any) -> Any:
    from hims.consultations.models import Consultation

    values: dict[str, Any] = {
        "id": CONSULTATION,
        "started_at": T0,
        "patient_id": PATIENT,
        "practitioner_id": PRACTITIONER,
        "appointment_id": uuid.uuid4(),
        "kind": "appointment",
        "status": "in_progress",
        "reason": "Chest pain on exertion",
        "subjective": "s",
        "objective": "o",
        "assessment": "a",
        "plan": "p",
        "finished_at": None,
        "signed_at": None,
        "started_by": uuid.uuid4(),
        "signed_by": None,
        "version": 1,
    }
    return Consultation(**(values | over))


def test_encounter_in_progress_round_trip() -> None:
    row, resource = _row_round_trip(encounter, _consultation())
    assert resource["status"] == "in-progress"
    assert resource["class"]["code"] == "AMB"
    assert resource["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert resource["participant"][0]["individual"] == {"reference": f"Practitioner/{PRACTITIONER}"}
    assert resource["appointment"] == [{"reference": f"Appointment/{row['appointment_id']}"}]
    assert resource["period"] == {"start": "2026-03-04T09:30:00Z"}
    assert resource["reasonCode"] == [{"text": "Chest pain on exertion"}]


def test_encounter_finished_and_signed_round_trip() -> None:
    _, finished = _row_round_trip(encounter, _consultation(status="finished", finished_at=T1))
    assert finished["status"] == "finished"
    assert finished["period"]["end"] == "2026-03-04T09:50:12Z"
    row, signed = _row_round_trip(
        encounter,
        _consultation(status="signed", finished_at=T1, signed_at=T1, signed_by=uuid.uuid4(), kind="walk_in"),
    )
    assert signed["status"] == "finished"
    assert encounter.to_row(signed)["status"] == "signed"
    assert row["kind"] == "walk_in"


def test_encounter_hl7_example_in_and_back() -> None:
    example = _example(
        "Encounter-f001.json",
        subject={"reference": f"Patient/{PATIENT}"},
        participant=[{"individual": {"reference": f"Practitioner/{PRACTITIONER}", "display": "P. Voigt"}}],
        period={"start": "2012-12-01T10:00:00Z", "end": "2012-12-01T12:20:00Z"},
    )
    row, back = _resource_round_trip(encounter, example)
    assert row["status"] == "finished"
    assert row["patient_id"] == PATIENT
    assert row["practitioner_id"] == PRACTITIONER
    assert row["reason"] == "Heart valve replacement"
    assert row["started_at"] == datetime(2012, 12, 1, 10, tzinfo=UTC)
    assert back["class"]["code"] == "AMB"
    assert back["identifier"] == example["identifier"]
    assert back["hospitalization"] == example["hospitalization"]


def test_encounter_foreign_references_are_not_ours() -> None:
    row = encounter.to_row(_example("Encounter-f001.json"))
    assert row["patient_id"] is None
    assert row["practitioner_id"] is None
