"""Observation ↔ ``observations`` row (one vital sign per row, LOINC-coded, UCUM units).

We store each measured value as its own row, blood pressure included (systolic 8480-6 and
diastolic 8462-4 are two rows sharing the ``group_id`` of the vitals set they were taken in), so
``to_resource`` gives one single-valued Observation per row with the ``vitals-group`` extension.
An incoming panel with components (e.g. the HL7 blood-pressure example, LOINC 85354-9) becomes
one row per component through ``component_rows``.
"""

from __future__ import annotations

import uuid
from typing import Any

from hims.fhir.mappings._common import (
    as_decimal,
    concept,
    drop_empty,
    ext_uuid,
    ext_value,
    extension,
    extensions,
    instant,
    parse_instant,
    pick_coding,
    quantity,
    ref,
    ref_id,
    unmapped,
    uuid_extension,
    with_extra,
)

LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_INTERPRETATIONS = {
    "N": "Normal",
    "H": "High",
    "L": "Low",
    "HH": "Critical high",
    "LL": "Critical low",
}
MODELLED = frozenset(
    {
        "status",
        "category",
        "code",
        "subject",
        "encounter",
        "effectiveDateTime",
        "effectiveInstant",
        "effectivePeriod",
        "valueQuantity",
        "interpretation",
        "referenceRange",
        "extension",
    }
)


def _effective(resource: dict[str, Any]) -> Any:
    return parse_instant(
        resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or (resource.get("effectivePeriod") or {}).get("start")
    )


def _interpretation(resource: dict[str, Any]) -> str | None:
    for cc in resource.get("interpretation") or []:
        code = pick_coding(cc, INTERPRETATION).get("code")
        if code in _INTERPRETATIONS:
            return str(code)
    return None


def _value_columns(element: dict[str, Any]) -> dict[str, Any]:
    """code/value/unit/interpretation/range columns of an Observation or one of its components."""
    coding = pick_coding(element.get("code"), LOINC)
    value = element.get("valueQuantity") or {}
    ranges = element.get("referenceRange") or [{}]
    return {
        "code_system": coding.get("system") or LOINC,
        "code": coding.get("code"),
        "display": coding.get("display") or (element.get("code") or {}).get("text") or coding.get("code"),
        "value": as_decimal(value.get("value")),
        "unit": value.get("code") or value.get("unit"),
        "interpretation": _interpretation(element),
        "reference_low": as_decimal((ranges[0].get("low") or {}).get("value")),
        "reference_high": as_decimal((ranges[0].get("high") or {}).get("value")),
    }


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``observations`` from a single-valued Observation."""
    return {
        "patient_id": ref_id(resource.get("subject"), "Patient"),
        "consultation_id": ref_id(resource.get("encounter"), "Encounter"),
        "group_id": ext_uuid(resource, "vitals-group"),
        **_value_columns(resource),
        "derived": bool(ext_value(resource, "derived")),
        "effective_at": _effective(resource),
        "recorded_by": ext_uuid(resource, "recorded-by"),
    }


def component_rows(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per valued component of a panel Observation (all sharing a new ``group_id``)."""
    group_id = ext_uuid(resource, "vitals-group") or uuid.uuid4()
    base = to_row(resource)
    rows = []
    for component in resource.get("component") or []:
        if "valueQuantity" not in component:
            continue
        rows.append({**base, **_value_columns(component), "group_id": group_id, "derived": False})
    return rows


def _range(row: dict[str, Any]) -> list[dict[str, Any]]:
    low, high = row.get("reference_low"), row.get("reference_high")
    if low is None and high is None:
        return []
    return [drop_empty({"low": quantity(low, row.get("unit")), "high": quantity(high, row.get("unit"))})]


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR vital-signs Observation from an ``observations`` row."""
    interpretation = row.get("interpretation")
    resource = drop_empty(
        {
            "resourceType": "Observation",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions(
                uuid_extension("vitals-group", row.get("group_id")),
                extension("derived", valueBoolean=True if row.get("derived") else None),
                uuid_extension("recorded-by", row.get("recorded_by")),
            ),
            "status": "final",
            "category": [concept(CATEGORY, "vital-signs", "Vital Signs")],
            "code": concept(row.get("code_system") or LOINC, row.get("code"), row.get("display")),
            "subject": ref("Patient", row.get("patient_id")),
            "encounter": ref("Encounter", row.get("consultation_id")),
            "effectiveDateTime": instant(row.get("effective_at")),
            "valueQuantity": quantity(row.get("value"), row.get("unit")),
            "interpretation": [
                concept(INTERPRETATION, interpretation, _INTERPRETATIONS.get(str(interpretation)))
            ]
            if interpretation
            else [],
            "referenceRange": _range(row),
        }
    )
    return with_extra(resource, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of an Observation this mapping does not model (kept next to the row)."""
    return unmapped(resource, MODELLED, {"subject": "Patient", "encounter": "Encounter"})


SYSTOLIC, DIASTOLIC, BLOOD_PRESSURE = "8480-6", "8462-4", "85354-9"


def _component(row: dict[str, Any]) -> dict[str, Any]:
    interpretation = row.get("interpretation")
    return drop_empty(
        {
            "code": concept(row.get("code_system") or LOINC, row.get("code"), row.get("display")),
            "valueQuantity": quantity(row.get("value"), row.get("unit")),
            "interpretation": [
                concept(INTERPRETATION, interpretation, _INTERPRETATIONS.get(str(interpretation)))
            ]
            if interpretation
            else [],
            "referenceRange": _range(row),
        }
    )


def blood_pressure_panel(systolic: dict[str, Any], diastolic: dict[str, Any]) -> dict[str, Any]:
    """The vital-signs profile's blood pressure panel (85354-9) from our two rows of one vitals set.

    The panel has no row of its own: its id is left to the caller and ``component_rows`` reads it
    back as the two rows (sharing the ``vitals-group``).
    """
    resource = to_resource(systolic)
    for key in ("id", "valueQuantity", "interpretation", "referenceRange"):
        resource.pop(key, None)
    resource["code"] = concept(LOINC, BLOOD_PRESSURE, "Blood pressure panel with all children optional")
    resource["component"] = [_component(systolic), _component(diastolic)]
    return resource
