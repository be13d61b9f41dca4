"""ServiceRequest + Observation + DiagnosticReport ↔ ``lab_orders`` row.

One ``lab_orders`` row is the order and, once resulted, its single numeric result:

- ``to_resource`` / ``to_row``: the order as a ServiceRequest (intent order). Status: ordered
  and collected → ``active`` (collection time in the ``collected-at`` extension), resulted →
  ``completed``, cancelled → ``revoked``.
- ``result_observation`` / ``result_columns``: the result as a laboratory Observation
  (``basedOn`` the ServiceRequest; value, UCUM unit, reference range, H/L/N interpretation;
  effective = collected, issued = resulted).
- ``diagnostic_report`` / ``report_columns``: the report that groups the result.

The three resources share the row's UUID as their id (ids are unique per type in FHIR).
"""

from __future__ import annotations

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
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
REPORT_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_FLAGS = {"N": "Normal", "H": "High", "L": "Low"}
_STATUS_OUT = {"ordered": "active", "collected": "active", "resulted": "completed", "cancelled": "revoked"}
MODELLED = frozenset(
    {"status", "intent", "category", "code", "subject", "encounter", "authoredOn", "note", "extension"}
)


def _id(row: dict[str, Any]) -> str | None:
    return str(row["id"]) if row.get("id") else None


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Order columns of ``lab_orders`` from a ServiceRequest (results: ``result_columns``)."""
    coding = pick_coding(resource.get("code"), LOINC)
    collected_at = parse_instant(ext_value(resource, "collected-at"))
    status = resource.get("status")
    if status == "completed":
        ours = "resulted"
    elif status in ("revoked", "entered-in-error"):
        ours = "cancelled"
    else:
        ours = "collected" if collected_at else "ordered"
    notes = [n.get("text") for n in resource.get("note") or [] if n.get("text")]
    return {
        "patient_id": ref_id(resource.get("subject"), "Patient"),
        "consultation_id": ref_id(resource.get("encounter"), "Encounter"),
        "code_system": coding.get("system") or LOINC,
        "code": coding.get("code"),
        "display": coding.get("display") or (resource.get("code") or {}).get("text") or coding.get("code"),
        "status": ours,
        "note": "\n\n".join(notes) or None,
        "ordered_by": ext_uuid(resource, "ordered-by"),
        "ordered_at": parse_instant(resource.get("authoredOn")),
        "collected_at": collected_at,
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR ServiceRequest (laboratory order) from a ``lab_orders`` row."""
    resource = drop_empty(
        {
            "resourceType": "ServiceRequest",
            "id": _id(row),
            "extension": extensions(
                extension("collected-at", valueDateTime=instant(row.get("collected_at"))),
                uuid_extension("ordered-by", row.get("ordered_by")),
            ),
            "status": _STATUS_OUT.get(str(row.get("status")), "active"),
            "intent": "order",
            "category": [concept("http://snomed.info/sct", "108252007", "Laboratory procedure")],
            "code": concept(row.get("code_system") or LOINC, row.get("code"), row.get("display")),
            "subject": ref("Patient", row.get("patient_id")),
            "encounter": ref("Encounter", row.get("consultation_id")),
            "authoredOn": instant(row.get("ordered_at")),
            "note": [{"text": row["note"]}] if row.get("note") else [],
        }
    )
    return with_extra(resource, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of a ServiceRequest this mapping does not model (kept next to the row)."""
    return unmapped(resource, MODELLED, {"subject": "Patient", "encounter": "Encounter"})


def result_observation(row: dict[str, Any]) -> dict[str, Any] | None:
    """The result as a laboratory Observation (None until the order is resulted)."""
    if row.get("result_value") is None:
        return None
    unit = row.get("result_unit")
    flag = row.get("abnormal_flag")
    low, high = row.get("reference_low"), row.get("reference_high")
    return drop_empty(
        {
            "resourceType": "Observation",
            "id": _id(row),
            "basedOn": [ref("ServiceRequest", row.get("id"))] if row.get("id") else [],
            "status": "final",
            "category": [concept(OBSERVATION_CATEGORY, "laboratory", "Laboratory")],
            "code": concept(row.get("code_system") or LOINC, row.get("code"), row.get("display")),
            "subject": ref("Patient", row.get("patient_id")),
            "encounter": ref("Encounter", row.get("consultation_id")),
            "effectiveDateTime": instant(row.get("collected_at")),
            "issued": instant(row.get("resulted_at")),
            "valueQuantity": quantity(row["result_value"], unit),
            "interpretation": [concept(INTERPRETATION, flag, _FLAGS.get(str(flag)))] if flag else [],
            "referenceRange": [drop_empty({"low": quantity(low, unit), "high": quantity(high, unit)})]
            if low is not None or high is not None
            else [],
        }
    )


def result_columns(resource: dict[str, Any]) -> dict[str, Any]:
    """The result columns of ``lab_orders`` from a laboratory Observation."""
    value = resource.get("valueQuantity") or {}
    ranges = resource.get("referenceRange") or [{}]
    flag = next(
        (
            code
            for cc in resource.get("interpretation") or []
            if (code := pick_coding(cc, INTERPRETATION).get("code")) in _FLAGS
        ),
        None,
    )
    return {
        "resulted_at": parse_instant(resource.get("issued")),
        "result_value": as_decimal(value.get("value")),
        "result_unit": value.get("code") or value.get("unit"),
        "reference_low": as_decimal((ranges[0].get("low") or {}).get("value")),
        "reference_high": as_decimal((ranges[0].get("high") or {}).get("value")),
        "abnormal_flag": flag,
    }


def diagnostic_report(row: dict[str, Any]) -> dict[str, Any] | None:
    """The DiagnosticReport holding the result (None until the order is resulted)."""
    if row.get("result_value") is None:
        return None
    return drop_empty(
        {
            "resourceType": "DiagnosticReport",
            "id": _id(row),
            "basedOn": [ref("ServiceRequest", row.get("id"))] if row.get("id") else [],
            "status": "final",
            "category": [concept(REPORT_CATEGORY, "LAB", "Laboratory")],
            "code": concept(row.get("code_system") or LOINC, row.get("code"), row.get("display")),
            "subject": ref("Patient", row.get("patient_id")),
            "encounter": ref("Encounter", row.get("consultation_id")),
            "effectiveDateTime": instant(row.get("collected_at")),
            "issued": instant(row.get("resulted_at")),
            "result": [ref("Observation", row.get("id"))] if row.get("id") else [],
        }
    )


def report_columns(resource: dict[str, Any]) -> dict[str, Any]:
    """What a DiagnosticReport says about the order: resulted (final/amended/corrected) and when."""
    final = resource.get("status") in ("final", "amended", "corrected", "appended")
    return {
        "status": "resulted" if final else None,
        "resulted_at": parse_instant(resource.get("issued")),
        "collected_at": parse_instant(resource.get("effectiveDateTime")),
    }
