"""MedicationRequest ↔ ``prescriptions`` row (RxNorm-coded medicationCodeableConcept).

One dosage instruction: ``doseAndRate[0].doseQuantity`` (UCUM when the unit is one, else the dose
form as a plain unit, e.g. ``tablet``), ``route.text``, ``timing.code.text`` (our free-text
frequency, e.g. ``twice daily``) and ``text`` (the instructions). ``duration_days`` is
``dispenseRequest.expectedSupplyDuration`` in days. The rest of ``dispenseRequest`` is kept in
``extra``; further dosage instructions are not modelled.
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    UCUM,
    as_decimal,
    concept,
    concept_text,
    drop_empty,
    ext_uuid,
    extensions,
    instant,
    parse_instant,
    pick_coding,
    ref,
    ref_id,
    unmapped,
    uuid_extension,
    with_extra,
)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_UCUM_UNITS = frozenset(
    {"mg", "g", "ug", "mcg", "ng", "mL", "L", "[iU]", "[IU]", "U", "meq", "mmol", "%", "[drp]"}
)
_STATUS_IN = {
    "active": "active",
    "completed": "completed",
    "cancelled": "cancelled",
    "on-hold": "on-hold",
    "stopped": "cancelled",
    "entered-in-error": "cancelled",
}
MODELLED = frozenset(
    {
        "status",
        "intent",
        "medicationCodeableConcept",
        "medicationReference",
        "subject",
        "encounter",
        "authoredOn",
        "dosageInstruction",
        "extension",
    }
)


def _medication(resource: dict[str, Any]) -> dict[str, Any]:
    """The medication CodeableConcept: inline, or the code of a contained Medication."""
    if resource.get("medicationCodeableConcept"):
        return dict(resource["medicationCodeableConcept"])
    reference = (resource.get("medicationReference") or {}).get("reference", "")
    for contained in resource.get("contained") or []:
        if reference == f"#{contained.get('id')}" and contained.get("resourceType") == "Medication":
            return dict(contained.get("code") or {})
    display = (resource.get("medicationReference") or {}).get("display")
    return {"text": display} if display else {}


def _frequency(timing: dict[str, Any]) -> str | None:
    text = concept_text(timing.get("code"))
    if text:
        return str(text)
    repeat = timing.get("repeat") or {}
    if repeat.get("frequency") and repeat.get("periodUnit"):
        return f"{repeat['frequency']} per {repeat.get('period', 1)} {repeat['periodUnit']}"
    return None


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``prescriptions`` (the first dosage instruction)."""
    medication = _medication(resource)
    coding = pick_coding(medication, RXNORM)
    dosage = (resource.get("dosageInstruction") or [{}])[0]
    dose = ((dosage.get("doseAndRate") or [{}])[0]).get("doseQuantity") or {}
    supply = (resource.get("dispenseRequest") or {}).get("expectedSupplyDuration") or {}
    days = supply.get("value") if supply.get("code", supply.get("unit")) in ("d", "day", "days") else None
    return {
        "patient_id": ref_id(resource.get("subject"), "Patient"),
        "consultation_id": ref_id(resource.get("encounter"), "Encounter"),
        "drug_name": medication.get("text") or coding.get("display") or coding.get("code") or "",
        "rxnorm_code": coding.get("code") if coding.get("system") == RXNORM else None,
        "dose_value": as_decimal(dose.get("value")),
        "dose_unit": dose.get("unit") or dose.get("code"),
        "route": concept_text(dosage.get("route")),
        "frequency": _frequency(dosage.get("timing") or {}),
        "duration_days": int(days) if days is not None else None,
        "instructions": dosage.get("text"),
        "status": _STATUS_IN.get(str(resource.get("status")), "active"),
        "prescribed_by": ext_uuid(resource, "prescribed-by"),
        "prescribed_at": parse_instant(resource.get("authoredOn")),
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR MedicationRequest (intent order) from a ``prescriptions`` row."""
    unit = row.get("dose_unit")
    ucum = unit in _UCUM_UNITS
    dose = drop_empty(
        {
            "value": row.get("dose_value"),
            "unit": unit,
            "system": UCUM if ucum else None,
            "code": unit if ucum else None,
        }
    )
    dosage = drop_empty(
        {
            "text": row.get("instructions"),
            "timing": {"code": {"text": row["frequency"]}} if row.get("frequency") else None,
            "route": {"text": row["route"]} if row.get("route") else None,
            "doseAndRate": [{"doseQuantity": dose}] if dose else [],
        }
    )
    days = row.get("duration_days")
    resource = drop_empty(
        {
            "resourceType": "MedicationRequest",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions(uuid_extension("prescribed-by", row.get("prescribed_by"))),
            "status": row.get("status") or "active",
            "intent": "order",
            "medicationCodeableConcept": concept(
                RXNORM if row.get("rxnorm_code") else None,
                row.get("rxnorm_code"),
                row.get("drug_name"),
                text=row.get("drug_name"),
            ),
            "subject": ref("Patient", row.get("patient_id")),
            "encounter": ref("Encounter", row.get("consultation_id")),
            "authoredOn": instant(row.get("prescribed_at")),
            "dosageInstruction": [dosage] if dosage else [],
            "dispenseRequest": {
                "expectedSupplyDuration": {"value": days, "unit": "days", "system": UCUM, "code": "d"}
            }
            if days is not None
            else None,
        }
    )
    return with_extra(resource, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of a MedicationRequest this mapping does not model (kept next to the row)."""
    return unmapped(resource, MODELLED, {"subject": "Patient", "encounter": "Encounter"})
