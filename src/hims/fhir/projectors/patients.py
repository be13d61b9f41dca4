"""Patient ↔ ``patients``: the MRN is ours, and a FHIR Patient without one is given one."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from hims.fhir import repository as repo
from hims.fhir.mappings import patient as mapping
from hims.fhir.mappings._common import MR_TYPE, identifiers_in
from hims.fhir.projection import Candidate, Projector, keeping_extra, note_patient_rows, register
from hims.patients.models import Patient
from hims.patients.mrn import format_mrn

MRN_LENGTH = 20  # patients.mrn is String(20)


async def assign_mrns(conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """Keep a row's MRN; take the resource's MR identifier for a new row when it is free; else a new one.

    An MRN we assign is added to the resource as our MR identifier; an MR identifier we could not
    take as the MRN stays among the patient's other identifiers.
    """
    wanted = [str(c.row["mrn"]) for c in candidates if c.existing is None and c.row.get("mrn")]
    taken: set[str] = set()
    if wanted:
        match, mrns = repo.any_of("mrn", 1, wanted, "text")
        taken = {r["mrn"] for r in await conn.fetch(f"SELECT mrn FROM patients WHERE {match}", mrns)}  # noqa: S608
    for c in candidates:
        asked = c.row.get("mrn")
        if c.existing is not None:
            c.row["mrn"] = c.existing["mrn"]
        elif asked and len(asked) <= MRN_LENGTH and asked not in taken:
            taken.add(asked)
            continue
        else:
            c.row["mrn"] = format_mrn(await conn.fetchval("SELECT nextval('patients_mrn_seq')"))
        c.row["identifiers"] = [
            i
            for i in identifiers_in(c.resource, skip_system=mapping.MRN_SYSTEM)
            if not (i.get("type") == "MR" and i.get("value") == c.row["mrn"])
        ]
        if not any(i.get("system") == mapping.MRN_SYSTEM for i in c.resource.get("identifier") or []):
            ours = {"use": "usual", "type": MR_TYPE, "system": mapping.MRN_SYSTEM, "value": c.row["mrn"]}
            c.resource["identifier"] = [*(c.resource.get("identifier") or []), ours]
            c.amended = True


PATIENT = register(
    Projector(
        resource_type="Patient",
        model=Patient,
        to_row=mapping.to_row,
        to_resource=keeping_extra(mapping),
        rank=50,
        required=("given_name", "family_name", "date_of_birth"),
        complete=assign_mrns,
        delete_sets={"deleted_at": "now()", "active": "false"},
        is_deleted=lambda row: row.get("deleted_at") is not None,
        patient_column="id",
    )
)


@event.listens_for(Session, "after_flush")
def _note_merges(session: Session, _context: Any) -> None:
    """A merge moves the merged patient's rows with plain UPDATEs (the merge hooks): re-project
    every row of both patients before commit, so FHIR shows them under the survivor."""
    for obj in session.dirty:
        merged = isinstance(obj, Patient) and obj.merged_into_id is not None
        if merged and inspect(obj).attrs.merged_into_id.history.has_changes():
            note_patient_rows(session, obj.id, obj.merged_into_id)
