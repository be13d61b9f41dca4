"""Condition ↔ ``conditions`` row (ICD-10-CM coded; clinical and verification status codings).

``onset_date``/``abatement_date`` are dates: a partial FHIR date (``2013`` or ``2013-04``) or a
string/age onset has no date column and stays in ``extra`` only when the element is not modelled
(``onsetDateTime``/``abatementDateTime`` are).
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    concept,
    concept_text,
    drop_empty,
    ext_uuid,
    extensions,
    parse_date,
    pick_coding,
    ref,
    ref_id,
    status_code,
    unmapped,
    uuid_extension,
    with_extra,
)

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
MODELLED = frozenset(
    {
        "clinicalStatus",
        "verificationStatus",
        "category",
        "code",
        "subject",
        "encounter",
        "onsetDateTime",
        "abatementDateTime",
        "note",
        "extension",
    }
)


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``conditions`` (the ICD-10-CM coding first, else the first coding)."""
    coding = pick_coding(resource.get("code"), ICD10CM, SNOMED)
    notes = [n.get("text") for n in resource.get("note") or [] if n.get("text")]
    return {
        "patient_id": ref_id(resource.get("subject"), "Patient"),
        "consultation_id": ref_id(resource.get("encounter"), "Encounter"),
        "code_system": coding.get("system") or ICD10CM,
        "code": coding.get("code"),
        "display": coding.get("display") or concept_text(resource.get("code")) or coding.get("code"),
        "onset_date": parse_date(resource.get("onsetDateTime")),
        "abatement_date": parse_date(resource.get("abatementDateTime")),
        "clinical_status": status_code(resource.get("clinicalStatus")) or "active",
        "verification_status": status_code(resource.get("verificationStatus")) or "confirmed",
        "note": "\n\n".join(notes) or None,
        "recorded_by": ext_uuid(resource, "recorded-by"),
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR Condition from a ``conditions`` row (category: encounter-diagnosis when tied to a visit)."""
    category = "encounter-diagnosis" if row.get("consultation_id") else "problem-list-item"
    resource = drop_empty(
        {
            "resourceType": "Condition",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions(uuid_extension("recorded-by", row.get("recorded_by"))),
            "clinicalStatus": concept(CLINICAL, row.get("clinical_status"), None),
            "verificationStatus": concept(VERIFICATION, row.get("verification_status"), None),
            "category": [concept(CATEGORY, category, None)],
            "code": concept(row.get("code_system") or ICD10CM, row.get("code"), row.get("display")),
            "subject": ref("Patient", row.get("patient_id")),
            "encounter": ref("Encounter", row.get("consultation_id")),
            "onsetDateTime": row["onset_date"].isoformat() if row.get("onset_date") else None,
            "abatementDateTime": row["abatement_date"].isoformat() if row.get("abatement_date") else None,
            "note": [{"text": row["note"]}] if row.get("note") else [],
        }
    )
    return with_extra(resource, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of a Condition this mapping does not model (kept next to the row)."""
    return unmapped(resource, MODELLED, {"subject": "Patient", "encounter": "Encounter"})
