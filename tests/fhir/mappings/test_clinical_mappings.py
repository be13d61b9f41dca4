"""Clinical mappings (Encounter, Observation, Condition...): lossless both ways for the modelled fields.

Rows are built as plain model instances in memory (no database): row → FHIR → row is equal for
the modelled columns, every resource validates against the R4B models, and the HL7 examples
keep their modelled elements (and the unmapped ones through ``extra``) when mapped in and back.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from hims.fhir.mappings import (
    allergy_intolerance,
    appointment,
    condition,
    document_reference,
    encounter,
    lab,
    medication_request,
    observation,
)
from hims.fhir.mappings._common import HIMS, row_of

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
        if isinstance(value, list) and key != "contained":
            assert back[key][len(back[key]) - len(value) :] == value, key
        elif isinstance(value, dict):
            # Objects merge key by key; the row's part (e.g. expectedSupplyDuration) is rebuilt.
            assert all(back[key][k] == v for k, v in value.items() if k != "expectedSupplyDuration"), key
        else:
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
    assert back["reasonCode"] == example["reasonCode"]  # the SNOMED coding survives
    edited = encounter.to_resource({**row, "reason": "Chest pain"}, extra=encounter.extra(example))
    assert edited["reasonCode"] == [{"text": "Chest pain"}]  # an edited reason wins over stale codings


def test_encounter_foreign_references_are_not_ours() -> None:
    row = encounter.to_row(_example("Encounter-f001.json"))
    assert row["patient_id"] is None
    assert row["practitioner_id"] is None


# --- Observation ↔ observations -------------------------------------------------------------------


def _observation(**over: Any) -> Any:
    from hims.clinical.models import Observation

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": PATIENT,
        "consultation_id": CONSULTATION,
        "group_id": uuid.uuid4(),
        "code_system": "http://loinc.org",
        "code": "8867-4",
        "display": "Heart rate",
        "value": Decimal("112.000"),
        "unit": "/min",
        "interpretation": "H",
        "reference_low": Decimal("60.000"),
        "reference_high": Decimal("100.000"),
        "derived": False,
        "effective_at": T0,
        "recorded_by": uuid.uuid4(),
    }
    return Observation(**(values | over))


def test_observation_round_trip() -> None:
    row, resource = _row_round_trip(observation, _observation())
    assert resource["category"][0]["coding"][0]["code"] == "vital-signs"
    assert resource["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "8867-4",
        "display": "Heart rate",
    }
    assert resource["valueQuantity"] == {
        "value": Decimal("112.000"),
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert resource["interpretation"][0]["coding"][0]["code"] == "H"
    assert resource["effectiveDateTime"] == "2026-03-04T09:30:00Z"
    assert resource["encounter"] == {"reference": f"Encounter/{CONSULTATION}"}
    assert resource["referenceRange"][0]["high"]["value"] == Decimal("100.000")
    assert observation.to_row(resource)["group_id"] == row["group_id"]


def test_observation_critical_low_and_derived_bmi() -> None:
    _, low = _row_round_trip(
        observation, _observation(interpretation="LL", value=Decimal("85"), code="59408-5")
    )
    assert low["interpretation"][0]["coding"][0]["code"] == "LL"
    _, bmi = _row_round_trip(
        observation,
        _observation(
            code="39156-5",
            display="Body mass index (BMI) [Ratio]",
            unit="kg/m2",
            value=Decimal("31.2"),
            interpretation=None,
            reference_low=None,
            reference_high=None,
            derived=True,
            consultation_id=None,
        ),
    )
    assert not {"interpretation", "referenceRange", "encounter"} & set(bmi)
    assert bmi["extension"][1] == {"url": f"{HIMS}/StructureDefinition/derived", "valueBoolean": True}


def test_blood_pressure_rows_share_their_group() -> None:
    group = uuid.uuid4()
    systolic = observation.to_resource(
        row_of(_observation(code="8480-6", display="Systolic blood pressure", unit="mm[Hg]", group_id=group))
    )
    diastolic = observation.to_resource(
        row_of(_observation(code="8462-4", display="Diastolic blood pressure", unit="mm[Hg]", group_id=group))
    )
    assert observation.to_row(systolic)["group_id"] == observation.to_row(diastolic)["group_id"] == group


def test_observation_hl7_heart_rate_in_and_back() -> None:
    example = _example("Observation-heart-rate.json", subject={"reference": f"Patient/{PATIENT}"})
    row, back = _resource_round_trip(observation, example)
    assert (row["code"], row["value"], row["unit"]) == ("8867-4", Decimal("44"), "/min")
    assert row["effective_at"] == datetime(1999, 7, 2, tzinfo=UTC)
    assert back["valueQuantity"]["value"] == 44
    assert back["code"]["coding"][0]["code"] == "8867-4"


def test_blood_pressure_panel_becomes_one_row_per_component() -> None:
    example = _example("Observation-blood-pressure.json", subject={"reference": f"Patient/{PATIENT}"})
    rows = observation.component_rows(example)
    assert [(r["code"], r["unit"]) for r in rows] == [("8480-6", "mm[Hg]"), ("8462-4", "mm[Hg]")]
    assert rows[0]["group_id"] == rows[1]["group_id"]
    assert [r["interpretation"] for r in rows] == ["N", "L"]
    assert [r["value"] for r in rows] == [Decimal("107"), Decimal("60")]
    assert all(r["patient_id"] == PATIENT for r in rows)
    for r in rows:
        _valid(observation.to_resource({**r, "id": uuid.uuid4()}))


# --- Condition ↔ conditions -----------------------------------------------------------------------


def _condition(**over: Any) -> Any:
    from hims.clinical.models import Condition

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": PATIENT,
        "consultation_id": CONSULTATION,
        "code_system": "http://hl7.org/fhir/sid/icd-10-cm",
        "code": "I10",
        "display": "Essential (primary) hypertension",
        "onset_date": date(2025, 11, 2),
        "abatement_date": None,
        "clinical_status": "active",
        "verification_status": "confirmed",
        "note": "Home readings high too",
        "recorded_by": uuid.uuid4(),
        "version": 1,
    }
    return Condition(**(values | over))


def test_condition_round_trip() -> None:
    _, resource = _row_round_trip(condition, _condition())
    assert resource["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"
    assert resource["code"]["coding"][0]["code"] == "I10"
    assert resource["clinicalStatus"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
        "code": "active",
    }
    assert resource["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert resource["onsetDateTime"] == "2025-11-02"
    assert resource["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    _, resolved = _row_round_trip(
        condition,
        _condition(
            clinical_status="resolved",
            verification_status="provisional",
            abatement_date=date(2026, 1, 5),
            consultation_id=None,
            note=None,
        ),
    )
    assert resolved["abatementDateTime"] == "2026-01-05"
    assert resolved["category"][0]["coding"][0]["code"] == "problem-list-item"


def test_condition_hl7_example_in_and_back() -> None:
    example = _example("Condition-f201.json", subject={"reference": f"Patient/{PATIENT}"})
    row, back = _resource_round_trip(condition, example)
    assert (row["code_system"], row["code"], row["display"]) == (
        "http://snomed.info/sct",
        "386661006",
        "Fever",
    )
    assert (row["clinical_status"], row["verification_status"]) == ("resolved", "confirmed")
    assert row["onset_date"] == date(2013, 4, 2)
    assert back["abatementString"] == "around April 9, 2013"
    assert back["evidence"] == example["evidence"]


def test_condition_prefers_the_icd10cm_coding() -> None:
    resource = {
        "resourceType": "Condition",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"},
                {
                    "system": "http://hl7.org/fhir/sid/icd-10-cm",
                    "code": "I10",
                    "display": "Essential hypertension",
                },
            ]
        },
    }
    row = condition.to_row(resource)
    assert (row["code"], row["clinical_status"], row["verification_status"]) == ("I10", "active", "confirmed")


# --- AllergyIntolerance ↔ allergies ---------------------------------------------------------------


def _allergy(**over: Any) -> Any:
    from hims.clinical.models import Allergy

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": PATIENT,
        "substance": "Penicillin V",
        "code_system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "7980",
        "reaction": "Hives",
        "severity": "severe",
        "status": "active",
        "note": "Since childhood",
        "recorded_by": uuid.uuid4(),
        "version": 1,
    }
    return Allergy(**(values | over))


def test_allergy_round_trip() -> None:
    _, resource = _row_round_trip(allergy_intolerance, _allergy())
    assert resource["code"]["coding"][0] == {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "7980",
        "display": "Penicillin V",
    }
    assert resource["reaction"] == [{"manifestation": [{"text": "Hives"}], "severity": "severe"}]
    assert resource["criticality"] == "high"
    assert resource["clinicalStatus"]["coding"][0]["code"] == "active"
    assert resource["patient"] == {"reference": f"Patient/{PATIENT}"}


def test_allergy_without_reaction_or_code_keeps_its_severity() -> None:
    _, resource = _row_round_trip(
        allergy_intolerance,
        _allergy(
            reaction=None, severity="moderate", code=None, code_system=None, status="resolved", note=None
        ),
    )
    assert "reaction" not in resource
    assert resource["code"] == {"text": "Penicillin V"}
    assert resource["criticality"] == "low"


def test_allergy_hl7_example_in_and_back() -> None:
    example = _example("AllergyIntolerance-example.json", patient={"reference": f"Patient/{PATIENT}"})
    row, back = _resource_round_trip(allergy_intolerance, example)
    assert row["substance"] == "Cashew nuts"
    assert (row["code_system"], row["code"]) == ("http://snomed.info/sct", "227493005")
    assert (row["reaction"], row["severity"], row["status"]) == ("Anaphylactic reaction", "severe", "active")
    assert back["criticality"] == "high"
    assert back["category"] == ["food"]
    assert back["recordedDate"] == example["recordedDate"]


# --- MedicationRequest ↔ prescriptions ------------------------------------------------------------


def _prescription(**over: Any) -> Any:
    from hims.clinical.models import Prescription

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": PATIENT,
        "consultation_id": CONSULTATION,
        "drug_name": "Amoxicillin 500 MG Oral Capsule",
        "rxnorm_code": "308191",
        "dose_value": Decimal("500.0000"),
        "dose_unit": "mg",
        "route": "oral",
        "frequency": "three times daily",
        "duration_days": 7,
        "instructions": "Take with food",
        "status": "active",
        "prescribed_by": uuid.uuid4(),
        "prescribed_at": T0,
        "version": 1,
    }
    return Prescription(**(values | over))


def test_medication_request_round_trip() -> None:
    _, resource = _row_round_trip(medication_request, _prescription())
    assert resource["intent"] == "order"
    assert resource["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "308191",
        "display": "Amoxicillin 500 MG Oral Capsule",
    }
    dosage = resource["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": Decimal("500.0000"),
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert dosage["route"] == {"text": "oral"}
    assert dosage["timing"] == {"code": {"text": "three times daily"}}
    assert resource["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    assert resource["authoredOn"] == "2026-03-04T09:30:00Z"


def test_medication_request_statuses_and_dose_forms() -> None:
    for status in ("completed", "cancelled", "on-hold"):
        _, resource = _row_round_trip(medication_request, _prescription(status=status))
        assert resource["status"] == status
    _, tablets = _row_round_trip(
        medication_request,
        _prescription(
            dose_unit="tablet",
            rxnorm_code=None,
            route=None,
            frequency=None,
            duration_days=None,
            instructions=None,
        ),
    )
    assert tablets["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {
        "value": Decimal("500.0000"),
        "unit": "tablet",
    }
    assert tablets["medicationCodeableConcept"] == {"text": "Amoxicillin 500 MG Oral Capsule"}


def test_medication_request_hl7_example_in_and_back() -> None:
    example = _example("MedicationRequest-medrx0302.json", subject={"reference": f"Patient/{PATIENT}"})
    row, back = _resource_round_trip(medication_request, example)
    assert row["drug_name"] == "Azithromycin 250mg capsule (product)"
    assert row["rxnorm_code"] is None
    assert (row["dose_value"], row["dose_unit"]) == (Decimal("2"), "TAB")
    assert (row["route"], row["frequency"]) == ("Oral Route", "1 per 1 d")
    assert (row["instructions"], row["duration_days"], row["status"]) == ("Two tablets at once", 5, "active")
    assert back["dispenseRequest"]["quantity"] == example["dispenseRequest"]["quantity"]
    assert back["note"] == example["note"]
    assert back["contained"] == example["contained"]


# --- Appointment ↔ appointments -------------------------------------------------------------------


def _appointment(**over: Any) -> Any:
    from hims.scheduling.models import Appointment

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": PATIENT,
        "practitioner_id": PRACTITIONER,
        "facility_id": uuid.uuid4(),
        "department_id": uuid.uuid4(),
        "starts_at": T0,
        "ends_at": T1,
        "type": "in_person",
        "reason": "Follow-up of blood pressure",
        "status": "booked",
        "cancel_reason": None,
        "checked_in_at": None,
        "cancelled_at": None,
        "completed_at": None,
        "booked_by": uuid.uuid4(),
        "version": 1,
    }
    return Appointment(**(values | over))


def test_appointment_round_trip_every_status() -> None:
    expected = {
        "booked": "booked",
        "checked_in": "arrived",
        "completed": "fulfilled",
        "cancelled": "cancelled",
        "no_show": "noshow",
    }
    for ours, theirs in expected.items():
        _, resource = _row_round_trip(appointment, _appointment(status=ours))
        assert resource["status"] == theirs
    row, resource = _row_round_trip(appointment, _appointment())
    assert [p["actor"]["reference"] for p in resource["participant"]] == [
        f"Patient/{PATIENT}",
        f"Practitioner/{PRACTITIONER}",
        f"Location/{row['department_id']}",
    ]
    assert (resource["start"], resource["end"]) == ("2026-03-04T09:30:00Z", "2026-03-04T09:50:12Z")
    assert resource["appointmentType"]["coding"][0]["code"] == "in_person"
    assert resource["reasonCode"] == [{"text": "Follow-up of blood pressure"}]


def test_appointment_telemedicine_cancelled_keeps_its_times() -> None:
    _, resource = _row_round_trip(
        appointment,
        _appointment(
            type="telemedicine",
            status="cancelled",
            cancel_reason="Patient unwell",
            cancelled_at=T1,
            checked_in_at=T0,
            department_id=None,
            facility_id=None,
        ),
    )
    assert resource["appointmentType"]["coding"][0]["code"] == "telemedicine"
    assert resource["cancelationReason"] == {"text": "Patient unwell"}
    assert appointment.to_row(resource)["cancelled_at"] == T1
    assert (
        appointment.to_row(
            {**resource, "appointmentType": {"coding": [{"system": appointment.ACT_CODE, "code": "VR"}]}}
        )["type"]
        == "telemedicine"
    )


def test_appointment_hl7_example_in_and_back() -> None:
    example = _example("Appointment-example.json")
    example["participant"][0]["actor"]["reference"] = f"Patient/{PATIENT}"
    example["participant"][1]["actor"]["reference"] = f"Practitioner/{PRACTITIONER}"
    row, back = _resource_round_trip(appointment, example)
    assert (row["patient_id"], row["practitioner_id"], row["department_id"]) == (PATIENT, PRACTITIONER, None)
    assert (row["status"], row["type"]) == ("booked", "in_person")
    assert row["starts_at"] == datetime(2013, 12, 10, 9, tzinfo=UTC)
    assert back["description"] == example["description"]
    assert back["serviceType"] == example["serviceType"]


# --- DocumentReference ↔ documents ----------------------------------------------------------------


def _document(**over: Any) -> Any:
    from hims.documents.models import Document

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": PATIENT,
        "consultation_id": CONSULTATION,
        "title": "ECG 12-lead",
        "filename": "ecg.pdf",
        "content_type": "application/pdf",
        "size_bytes": 48213,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "storage_key": f"documents/{PATIENT}/abc",
        "uploaded_by": uuid.uuid4(),
        "deleted_at": None,
        "created_at": T0,
        "updated_at": T0,
    }
    return Document(**(values | over))


def test_document_reference_round_trip() -> None:
    row, resource = _row_round_trip(document_reference, _document())
    attachment = resource["content"][0]["attachment"]
    assert (attachment["contentType"], attachment["size"], attachment["title"]) == (
        "application/pdf",
        48213,
        "ecg.pdf",
    )
    assert "hash" not in attachment
    assert attachment["extension"][0]["valueString"] == row["sha256"]
    assert resource["context"] == {"encounter": [{"reference": f"Encounter/{CONSULTATION}"}]}
    assert (resource["status"], resource["description"]) == ("current", "ECG 12-lead")
    _, deleted = _row_round_trip(
        document_reference, _document(deleted_at=T1, consultation_id=None, title=None)
    )
    assert deleted["status"] == "entered-in-error"


def test_document_reference_hl7_example_in_and_back() -> None:
    example = _example("DocumentReference-example.json", subject={"reference": f"Patient/{PATIENT}"})
    row, back = _resource_round_trip(document_reference, example)
    assert (row["patient_id"], row["content_type"], row["size_bytes"]) == (
        PATIENT,
        "application/hl7-v3+xml",
        3654,
    )
    assert (row["title"], row["filename"], row["sha256"]) == ("Physical", "Physical", None)
    assert back["content"] == example["content"]
    assert back["identifier"] == example["identifier"]
    assert back["masterIdentifier"] == example["masterIdentifier"]


# --- ServiceRequest + Observation + DiagnosticReport ↔ lab_orders ---------------------------------


def _lab_order(**over: Any) -> Any:
    from hims.clinical.models import LabOrder

    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "patient_id": PATIENT,
        "consultation_id": CONSULTATION,
        "code_system": "http://loinc.org",
        "code": "2345-7",
        "display": "Glucose [Mass/volume] in Serum or Plasma",
        "status": "resulted",
        "note": "Fasting",
        "ordered_by": uuid.uuid4(),
        "ordered_at": T0,
        "collected_at": T1,
        "resulted_at": datetime(2026, 3, 4, 12, tzinfo=UTC),
        "result_value": Decimal("142.0000"),
        "result_unit": "mg/dL",
        "reference_low": Decimal("70.0000"),
        "reference_high": Decimal("99.0000"),
        "abnormal_flag": "H",
        "version": 1,
    }
    return LabOrder(**(values | over))


def test_lab_order_as_service_request_round_trip() -> None:
    expected = {"ordered": "active", "collected": "active", "resulted": "completed", "cancelled": "revoked"}
    for ours, theirs in expected.items():
        collected = None if ours in ("ordered", "cancelled") else T1
        _, resource = _row_round_trip(lab, _lab_order(status=ours, collected_at=collected))
        assert resource["status"] == theirs
        assert resource["intent"] == "order"
        assert resource["code"]["coding"][0]["code"] == "2345-7"


def test_lab_result_as_observation_and_report() -> None:
    row = row_of(_lab_order())
    result = _valid(lab.result_observation(row) or {})
    assert result["basedOn"] == [{"reference": f"ServiceRequest/{row['id']}"}]
    assert result["category"][0]["coding"][0]["code"] == "laboratory"
    assert result["valueQuantity"]["code"] == "mg/dL"
    assert result["interpretation"][0]["coding"][0]["code"] == "H"
    assert lab.result_columns(result) == {
        k: row[k]
        for k in (
            "resulted_at",
            "result_value",
            "result_unit",
            "reference_low",
            "reference_high",
            "abnormal_flag",
        )
    }
    report = _valid(lab.diagnostic_report(row) or {})
    assert report["result"] == [{"reference": f"Observation/{row['id']}"}]
    assert lab.report_columns(report) == {
        "status": "resulted",
        "resulted_at": row["resulted_at"],
        "collected_at": row["collected_at"],
    }
    pending = row_of(_lab_order(status="ordered", result_value=None, resulted_at=None, abnormal_flag=None))
    assert lab.result_observation(pending) is None
    assert lab.diagnostic_report(pending) is None


def test_hl7_diagnostic_report_gives_its_times() -> None:
    columns = lab.report_columns(_example("DiagnosticReport-f201.json"))
    assert columns["status"] == "resulted"
    assert columns["resulted_at"] == datetime(2012, 12, 1, 11, tzinfo=UTC)


# --- Every stored HL7 example of a mapped type maps in and back -----------------------------------

_MODULES = {
    "Encounter": encounter,
    "Condition": condition,
    "AllergyIntolerance": allergy_intolerance,
    "MedicationRequest": medication_request,
    "Appointment": appointment,
    "DocumentReference": document_reference,
}


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in EXAMPLES.glob("*.json") if p.name.split("-")[0] in _MODULES)
    + sorted(
        p.name for p in EXAMPLES.glob("Observation-*.json") if "valueQuantity" in orjson.loads(p.read_bytes())
    ),
)
def test_every_example_of_a_mapped_type_round_trips(name: str) -> None:
    data = _example(name)
    module = observation if data["resourceType"] == "Observation" else _MODULES[data["resourceType"]]
    _resource_round_trip(module, data)


def test_blood_pressure_rows_as_a_profile_panel_and_back() -> None:
    group, nurse = uuid.uuid4(), uuid.uuid4()
    systolic = row_of(
        _observation(
            code="8480-6",
            display="Systolic blood pressure",
            unit="mm[Hg]",
            value=Decimal("150"),
            group_id=group,
            recorded_by=nurse,
        )
    )
    diastolic = row_of(
        _observation(
            code="8462-4",
            display="Diastolic blood pressure",
            unit="mm[Hg]",
            value=Decimal("85"),
            interpretation="N",
            reference_low=Decimal("60"),
            reference_high=Decimal("89"),
            group_id=group,
            recorded_by=nurse,
        )
    )
    panel = _valid(observation.blood_pressure_panel(systolic, diastolic))
    assert panel["code"]["coding"][0]["code"] == "85354-9"
    assert "valueQuantity" not in panel
    assert [c["valueQuantity"]["value"] for c in panel["component"]] == [Decimal("150"), Decimal("85")]
    back = observation.component_rows(panel)
    for original, row in zip((systolic, diastolic), back, strict=True):
        assert row == {k: original[k] for k in row}
