"""AllergyIntolerance ↔ ``allergies`` row.

``severity`` (mild/moderate/severe) is the reaction's severity when a reaction is recorded; a
FHIR reaction needs a manifestation, so without one it travels in the ``severity`` extension.
``criticality`` is derived (severe → high, else low) and not read back. ``status`` is the
clinicalStatus (active/inactive/resolved).
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    concept,
    concept_text,
    drop_empty,
    ext_uuid,
    ext_value,
    extension,
    extensions,
    pick_coding,
    ref,
    ref_id,
    status_code,
    unmapped,
    uuid_extension,
    with_extra,
)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
_SEVERITIES = ("mild", "moderate", "severe")
_FROM_CRITICALITY = {"high": "severe", "low": "mild", "unable-to-assess": "moderate"}
MODELLED = frozenset({"clinicalStatus", "criticality", "code", "patient", "note", "reaction", "extension"})


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``allergies`` (the RxNorm coding first, then SNOMED CT, else the first)."""
    coding = pick_coding(resource.get("code"), RXNORM, SNOMED)
    reactions = resource.get("reaction") or []
    first = reactions[0] if reactions else {}
    manifestations = [concept_text(m) for m in first.get("manifestation") or []]
    severity = first.get("severity") or ext_value(resource, "severity")
    if severity not in _SEVERITIES:
        severity = _FROM_CRITICALITY.get(str(resource.get("criticality")), "moderate")
    notes = [n.get("text") for n in resource.get("note") or [] if n.get("text")]
    status = status_code(resource.get("clinicalStatus"))
    return {
        "patient_id": ref_id(resource.get("patient"), "Patient"),
        "substance": concept_text(resource.get("code")) or coding.get("code") or "",
        "code_system": coding.get("system") if coding.get("code") else None,
        "code": coding.get("code"),
        "reaction": "; ".join(m for m in manifestations if m) or None,
        "severity": severity,
        "status": status if status in ("active", "inactive", "resolved") else "active",
        "note": "\n\n".join(notes) or None,
        "recorded_by": ext_uuid(resource, "recorded-by"),
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR AllergyIntolerance from an ``allergies`` row."""
    severity = row.get("severity")
    reaction = (
        [{"manifestation": [{"text": row["reaction"]}], "severity": severity}] if row.get("reaction") else []
    )
    resource = drop_empty(
        {
            "resourceType": "AllergyIntolerance",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions(
                None if reaction else extension("severity", valueCode=severity),
                uuid_extension("recorded-by", row.get("recorded_by")),
            ),
            "clinicalStatus": concept(CLINICAL, row.get("status"), None),
            "criticality": "high" if severity == "severe" else "low",
            "code": concept(
                row.get("code_system"), row.get("code"), row.get("substance"), text=row.get("substance")
            ),
            "patient": ref("Patient", row.get("patient_id")),
            "note": [{"text": row["note"]}] if row.get("note") else [],
            "reaction": reaction,
        }
    )
    return with_extra(resource, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of an AllergyIntolerance this mapping does not model (kept next to the row)."""
    return unmapped(resource, MODELLED, {"patient": "Patient"})
