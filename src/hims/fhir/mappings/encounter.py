"""Encounter ↔ ``consultations`` row.

A consultation is an ambulatory encounter (class AMB). ``in_progress`` is ``in-progress``;
``finished`` and ``signed`` are both ``finished`` (a signed note carries the ``signed-at``
extension, which maps back to ``signed``). The SOAP note (subjective/objective/assessment/plan)
is not part of an Encounter and is not mapped here (it belongs to a Composition/ClinicalImpression).
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    HIMS,
    coded_reasons,
    concept,
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

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
KIND_SYSTEM = f"{HIMS}/CodeSystem/consultation-kind"
MODELLED = frozenset(
    {"status", "class", "type", "subject", "participant", "appointment", "period", "reasonCode", "extension"}
)


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``consultations`` (references that are not our UUIDs become None)."""
    period = resource.get("period") or {}
    signed_at = parse_instant(ext_value(resource, "signed-at"))
    if resource.get("status") == "finished":
        status = "signed" if signed_at else "finished"
    else:
        status = "in_progress"
    kind = "walk_in"
    for cc in resource.get("type") or []:
        for coding in cc.get("coding") or []:
            if coding.get("system") == KIND_SYSTEM and coding.get("code") in ("walk_in", "appointment"):
                kind = coding["code"]
    practitioner_id = None
    for participant in resource.get("participant") or []:
        practitioner_id = ref_id(participant.get("individual"), "Practitioner")
        if practitioner_id:
            break
    appointment_id = None
    for appointment in resource.get("appointment") or []:
        appointment_id = ref_id(appointment, "Appointment")
        if appointment_id:
            break
    return {
        "patient_id": ref_id(resource.get("subject"), "Patient"),
        "practitioner_id": practitioner_id,
        "appointment_id": appointment_id,
        "kind": kind,
        "status": status,
        "reason": reason_text(resource.get("reasonCode")),
        "started_at": parse_instant(period.get("start")),
        "finished_at": parse_instant(period.get("end")),
        "signed_at": signed_at,
        "started_by": ext_uuid(resource, "started-by"),
        "signed_by": ext_uuid(resource, "signed-by"),
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR Encounter from a ``consultations`` row (plus the unmapped elements in ``extra``)."""
    resource = drop_empty(
        {
            "resourceType": "Encounter",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions(
                extension("signed-at", valueDateTime=instant(row.get("signed_at"))),
                uuid_extension("started-by", row.get("started_by")),
                uuid_extension("signed-by", row.get("signed_by")),
            ),
            "status": "in-progress" if row.get("status") == "in_progress" else "finished",
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [concept(KIND_SYSTEM, row["kind"], None)] if row.get("kind") else [],
            "subject": ref("Patient", row.get("patient_id")),
            "participant": [
                {
                    "type": [concept(PARTICIPATION, "PPRF", "primary performer")],
                    "individual": ref("Practitioner", row["practitioner_id"]),
                }
            ]
            if row.get("practitioner_id")
            else [],
            "appointment": [ref("Appointment", row["appointment_id"])] if row.get("appointment_id") else [],
            "period": drop_empty(
                {"start": instant(row.get("started_at")), "end": instant(row.get("finished_at"))}
            ),
            "reasonCode": [{"text": row["reason"]}] if row.get("reason") else [],
        }
    )
    return with_extra(resource, restore_reasons(resource, extra, row.get("reason")))


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of an Encounter this mapping does not model (kept next to the row)."""
    out = unmapped(resource, MODELLED, {"subject": "Patient"})
    row = to_row(resource)
    mapped_practitioner = ref("Practitioner", row["practitioner_id"])
    participants = list(resource.get("participant") or [])
    for i, participant in enumerate(participants):
        if (
            mapped_practitioner
            and participant.get("individual", {}).get("reference") == mapped_practitioner["reference"]
        ):
            del participants[i]
            break
    if participants:
        out["participant"] = participants
    mapped_appointment = ref("Appointment", row["appointment_id"])
    appointments = [a for a in resource.get("appointment") or [] if a != mapped_appointment]
    if appointments:
        out["appointment"] = appointments
    if coded := coded_reasons(resource):
        out["reasonCode"] = coded
    types = [cc for cc in resource.get("type") or [] if not _is_kind(cc)]
    if types:
        out["type"] = types
    return out


def _is_kind(cc: dict[str, Any]) -> bool:
    return any(c.get("system") == KIND_SYSTEM for c in cc.get("coding") or [])
