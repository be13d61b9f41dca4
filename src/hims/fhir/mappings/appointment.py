"""Appointment ↔ ``appointments`` row.

Status: booked → booked, checked_in → arrived, completed → fulfilled, cancelled → cancelled,
no_show → noshow. ``type`` (in_person / telemedicine) is ``appointmentType`` in our code system
(an incoming v3-ActCode ``VR`` "virtual" is read as telemedicine). The patient and practitioner
are participants, the department a Location participant; the facility, the check-in /
cancel / completion times and the booking account are our extensions.
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    HIMS,
    coded_reasons,
    concept,
    concept_text,
    drop_empty,
    ext_uuid,
    ext_value,
    extension,
    extensions,
    instant,
    parse_instant,
    reason_text,
    ref,
    ref_id,
    restore_reasons,
    unmapped,
    uuid_extension,
    with_extra,
)

TYPE_SYSTEM = f"{HIMS}/CodeSystem/appointment-type"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_STATUS_OUT = {
    "booked": "booked",
    "checked_in": "arrived",
    "completed": "fulfilled",
    "cancelled": "cancelled",
    "no_show": "noshow",
}
_STATUS_IN = {
    "proposed": "booked",
    "pending": "booked",
    "booked": "booked",
    "waitlist": "booked",
    "arrived": "checked_in",
    "checked-in": "checked_in",
    "fulfilled": "completed",
    "cancelled": "cancelled",
    "entered-in-error": "cancelled",
    "noshow": "no_show",
}
_TIMES = (
    ("checked_in_at", "checked-in-at"),
    ("cancelled_at", "cancelled-at"),
    ("completed_at", "completed-at"),
)
MODELLED = frozenset(
    {
        "status",
        "cancelationReason",
        "appointmentType",
        "reasonCode",
        "start",
        "end",
        "participant",
        "extension",
    }
)


def _kind(resource: dict[str, Any]) -> str:
    for coding in (resource.get("appointmentType") or {}).get("coding") or []:
        if coding.get("system") == TYPE_SYSTEM and coding.get("code") in ("in_person", "telemedicine"):
            return str(coding["code"])
        if coding.get("system") == ACT_CODE and coding.get("code") == "VR":
            return "telemedicine"
    return "in_person"


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``appointments``."""
    actors = [p.get("actor") for p in resource.get("participant") or []]
    row: dict[str, Any] = {
        "patient_id": next((i for a in actors if (i := ref_id(a, "Patient"))), None),
        "practitioner_id": next((i for a in actors if (i := ref_id(a, "Practitioner"))), None),
        "department_id": next((i for a in actors if (i := ref_id(a, "Location"))), None),
        "facility_id": ext_uuid(resource, "facility"),
        "starts_at": parse_instant(resource.get("start")),
        "ends_at": parse_instant(resource.get("end")),
        "type": _kind(resource),
        "reason": reason_text(resource.get("reasonCode")),
        "status": _STATUS_IN.get(str(resource.get("status")), "booked"),
        "cancel_reason": concept_text(resource.get("cancelationReason")),
        "booked_by": ext_uuid(resource, "booked-by"),
    }
    for column, name in _TIMES:
        row[column] = parse_instant(ext_value(resource, name))
    return row


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR Appointment from an ``appointments`` row."""
    participants = [
        {"actor": reference, "required": "required", "status": "accepted"}
        for reference in (
            ref("Patient", row.get("patient_id")),
            ref("Practitioner", row.get("practitioner_id")),
            ref("Location", row.get("department_id")),
        )
        if reference
    ]
    kind = row.get("type")
    resource = drop_empty(
        {
            "resourceType": "Appointment",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions(
                uuid_extension("facility", row.get("facility_id")),
                *(extension(name, valueDateTime=instant(row.get(column))) for column, name in _TIMES),
                uuid_extension("booked-by", row.get("booked_by")),
            ),
            "status": _STATUS_OUT.get(str(row.get("status")), "booked"),
            "cancelationReason": {"text": row["cancel_reason"]} if row.get("cancel_reason") else None,
            "appointmentType": concept(
                TYPE_SYSTEM, kind, {"telemedicine": "Telemedicine", "in_person": "In person"}.get(str(kind))
            ),
            "reasonCode": [{"text": row["reason"]}] if row.get("reason") else [],
            "start": instant(row.get("starts_at")),
            "end": instant(row.get("ends_at")),
            "participant": participants,
        }
    )
    return with_extra(resource, restore_reasons(resource, extra, row.get("reason")))


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of an Appointment this mapping does not model (kept next to the row)."""
    out = unmapped(resource, MODELLED)
    row = to_row(resource)
    mapped = {
        r["reference"]
        for r in (
            ref("Patient", row["patient_id"]),
            ref("Practitioner", row["practitioner_id"]),
            ref("Location", row["department_id"]),
        )
        if r
    }
    if coded := coded_reasons(resource):
        out["reasonCode"] = coded
    others = []
    for participant in resource.get("participant") or []:
        reference = (participant.get("actor") or {}).get("reference")
        if reference in mapped:
            mapped.discard(reference)
        else:
            others.append(participant)
    if others:
        out["participant"] = others
    return out
