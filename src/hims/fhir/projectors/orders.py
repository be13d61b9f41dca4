"""Orders: MedicationRequest ↔ ``prescriptions``, ServiceRequest ↔ ``lab_orders``, DocumentReference
↔ ``documents``.

The domain rules the REST API enforces hold for FHIR writes too:

* **Prescriptions.** A new active (or on-hold) MedicationRequest, or one whose drug changes, is
  checked against the patient's active allergies like ``POST …/prescriptions``; a conflict is
  refused with 409 ``allergy_conflict`` (an override needs a documented reason and a named
  prescriber, which only the REST API records). Completed and cancelled are final, as in REST.
* **Lab orders.** Only a LOINC-coded order (check digit verified) is a lab order; its status moves
  forward only (ordered → collected → resulted, or cancelled). A resulted row also appears as the
  result Observation and the DiagnosticReport (same id as the order), written by the domain → FHIR
  side only.
* **Documents.** A row needs a file we hold, which only an upload stores: a new DocumentReference
  stays FHIR-only, and an update cannot change the file a row points at.

Who-did-it columns (``prescribed_by``, ``ordered_by``, ``uploaded_by``) and the order times keep
the row's value when a FHIR version leaves them out; a new row without a time gets the current one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from hims.clinical.allergy_check import AllergyFacts, find_conflicts
from hims.clinical.coding import loinc_is_valid
from hims.clinical.models import LabOrder, Prescription
from hims.consultations.models import consultation_partition_filter
from hims.core.errors import Conflict
from hims.documents.models import Document
from hims.fhir import repository as repo
from hims.fhir.mappings import document_reference as documents
from hims.fhir.mappings import lab
from hims.fhir.mappings import medication_request as medication
from hims.fhir.mappings._common import pick_coding
from hims.fhir.projection import Candidate, Projector, keeping_extra, register

#: Allowed status changes; completed/resulted and cancelled are final (as in hims.clinical).
PRESCRIPTION_TRANSITIONS = {
    "active": {"completed", "cancelled", "on-hold"},
    "on-hold": {"active", "cancelled"},
    "completed": set[str](),
    "cancelled": set[str](),
}
LAB_TRANSITIONS = {
    "ordered": {"collected", "resulted", "cancelled"},
    "collected": {"resulted", "cancelled"},
    "resulted": set[str](),
    "cancelled": set[str](),
}
#: FHIR statuses that map onto ours without loss of meaning (others stay FHIR-only, e.g. draft).
_PRESCRIPTION_STATUSES = frozenset(
    {"active", "on-hold", "completed", "cancelled", "stopped", "entered-in-error"}
)
_LAB_STATUSES = frozenset({"active", "completed", "revoked", "entered-in-error"})
#: The file a document row points at; a FHIR version cannot change it.
_FILE_COLUMNS = ("storage_key", "sha256", "size_bytes", "content_type")


def _keep(c: Candidate, *columns: str) -> None:
    """Columns the FHIR version leaves out keep the row's value (who did it, when)."""
    if c.existing is not None:
        for name in columns:
            if c.row.get(name) is None:
                c.row[name] = c.existing[name]


def _moves(c: Candidate, transitions: dict[str, set[str]]) -> None:
    """Refuse a status change the domain does not allow (e.g. out of cancelled)."""
    if c.existing is None:
        return
    before, after = c.existing["status"], c.row["status"]
    if before != after and after not in transitions.get(before, set()):
        c.problem = f"status cannot change from {before} to {after}"


async def _link_consultations(conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """Keep a consultation link only when the consultation is the same patient's (as REST checks)."""
    wanted = {c.row["consultation_id"] for c in candidates if c.row.get("consultation_id")}
    if not wanted:
        return
    match, ids = repo.any_of("id", 1, list(wanted), "uuid")
    narrow = consultation_partition_filter(match, len(wanted))
    sql = f"SELECT id, patient_id FROM consultations WHERE {match}{narrow}"  # noqa: S608
    owners = {r["id"]: r["patient_id"] for r in await conn.fetch(sql, ids)}
    for c in candidates:
        if c.row.get("consultation_id") and owners.get(c.row["consultation_id"]) != c.row["patient_id"]:
            c.row["consultation_id"] = None


# ------------------------------------------------------------------------------ MedicationRequest


async def _allergy_facts(
    conn: asyncpg.Connection, patient_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[AllergyFacts]]:
    """Active allergies per patient (what the prescribing check reads)."""
    facts: dict[uuid.UUID, list[AllergyFacts]] = {}
    for r in await conn.fetch(
        "SELECT id, patient_id, substance, code, severity, reaction FROM allergies "
        "WHERE patient_id = ANY($1::uuid[]) AND status = 'active' ORDER BY created_at",
        list(patient_ids),
    ):
        facts.setdefault(r["patient_id"], []).append(
            AllergyFacts(str(r["id"]), r["substance"], r["code"], r["severity"], r["reaction"])
        )
    return facts


def _prescribes(c: Candidate) -> bool:
    """Whether this version prescribes a drug now (new or changed drug, not a finished record)."""
    if c.row["status"] not in ("active", "on-hold"):
        return False
    drug = (c.row["drug_name"], c.row.get("rxnorm_code"))
    return c.existing is None or drug != (c.existing["drug_name"], c.existing["rxnorm_code"])


async def _check_allergies(conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """Refuse (409 ``allergy_conflict``) a prescription that conflicts with an active allergy."""
    due = [c for c in candidates if c.problem is None and _prescribes(c)]
    if not due:
        return
    facts = await _allergy_facts(conn, {c.row["patient_id"] for c in due})
    for c in due:
        conflicts = find_conflicts(
            c.row["drug_name"], c.row.get("rxnorm_code"), facts.get(c.row["patient_id"], [])
        )
        if conflicts:
            raise Conflict(
                "The drug conflicts with the patient's active allergies; "
                "prescribe through the REST API with an override reason.",
                code="allergy_conflict",
                extra={
                    "conflicts": [
                        {"allergy_id": x.allergy_id, "severity": x.severity, "match": x.match}
                        for x in conflicts
                    ]
                },
            )


async def complete_prescriptions(conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """Statuses, who and when, the consultation link, then the allergy check."""
    now = datetime.now(UTC)
    for c in candidates:
        if c.resource.get("intent") != "order" or c.resource.get("status") not in _PRESCRIPTION_STATUSES:
            c.problem = "only an order with a known status is a prescription"
            continue
        _keep(c, "prescribed_by", "prescribed_at")
        c.row["prescribed_at"] = c.row.get("prescribed_at") or now
        _moves(c, PRESCRIPTION_TRANSITIONS)
    ok = [c for c in candidates if c.problem is None]
    await _link_consultations(conn, ok)
    await _check_allergies(conn, ok)


# ------------------------------------------------------------------------------ ServiceRequest


async def complete_lab_orders(conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """Only LOINC-coded orders are lab orders; statuses move forward; who and when are kept."""
    now = datetime.now(UTC)
    for c in candidates:
        loinc = pick_coding(c.resource.get("code"), lab.LOINC)
        if (
            c.resource.get("intent") != "order"
            or c.resource.get("status") not in _LAB_STATUSES
            or loinc.get("system") != lab.LOINC
            or not loinc_is_valid(str(loinc.get("code") or ""))
        ):
            c.problem = "only a LOINC-coded order with a known status is a lab order"
            continue
        _keep(c, "ordered_by", "ordered_at", "collected_at")
        c.row["ordered_at"] = c.row.get("ordered_at") or now
        if c.row["status"] == "ordered" and c.row.get("collected_at"):
            c.row["status"] = "collected"
        _moves(c, LAB_TRANSITIONS)
    await _link_consultations(conn, [c for c in candidates if c.problem is None])


def lab_results(row: dict[str, Any]) -> list[dict[str, Any]]:
    """A resulted order's Observation and DiagnosticReport (nothing before it is resulted)."""
    if row.get("status") != "resulted":
        return []
    return [r for r in (lab.result_observation(row), lab.diagnostic_report(row)) if r is not None]


# ------------------------------------------------------------------------------ DocumentReference


async def complete_documents(_conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """A row only for a file we hold (an upload made its row); the file of a row cannot change."""
    for c in candidates:
        if c.existing is None:
            c.problem = "no uploaded file is stored for it"
            continue
        attachment = ((c.resource.get("content") or [{}])[0]).get("attachment") or {}
        given = {name: c.row.get(name) for name in _FILE_COLUMNS}
        given["content_type"] = attachment.get("contentType")
        if any(v is not None and v != c.existing[name] for name, v in given.items()):
            c.problem = "the file of a document cannot be changed; upload a new document"
            continue
        _keep(c, "uploaded_by")
        for name in _FILE_COLUMNS:
            c.row[name] = c.existing[name]
        c.row["filename"] = c.row.get("filename") or c.existing["filename"]
        if None in given.values():  # the stored version says what the file is, as the row does
            c.resource = documents.to_resource(
                {**dict(c.existing), **c.row},
                extra=documents.extra(c.resource),  # noqa: S610
            )
            c.amended = True


PRESCRIPTION = register(
    Projector(
        resource_type="MedicationRequest",
        model=Prescription,
        to_row=medication.to_row,
        to_resource=keeping_extra(medication),
        rank=90,
        required=("patient_id", "drug_name", "dose_value", "dose_unit"),
        references={"patient_id": "patients"},
        complete=complete_prescriptions,
        delete_sets={"status": "'cancelled'"},
    )
)
LAB_ORDER = register(
    Projector(
        resource_type="ServiceRequest",
        model=LabOrder,
        to_row=lab.to_row,
        to_resource=keeping_extra(lab),
        rank=90,
        required=("patient_id", "code", "display"),
        references={"patient_id": "patients"},
        complete=complete_lab_orders,
        delete_sets={"status": "'cancelled'"},
        derived=lab_results,
    )
)
DOCUMENT = register(
    Projector(
        resource_type="DocumentReference",
        model=Document,
        to_row=documents.to_row,
        to_resource=keeping_extra(documents),
        rank=90,
        required=("patient_id",),
        references={"patient_id": "patients"},
        complete=complete_documents,
        delete_sets={"deleted_at": "now()"},
        is_deleted=lambda row: row.get("deleted_at") is not None,
    )
)
