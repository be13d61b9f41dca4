"""Encounter, Observation, Condition and AllergyIntolerance ↔ the clinical record tables.

* Encounter ↔ ``consultations`` (partitioned by year of ``started_at``: the upsert's conflict
  target is ``(id, started_at)``, so ``period.start`` cannot change once the row exists). Only an
  ambulatory (class AMB) encounter that is ``in-progress`` or ``finished`` is a consultation, and
  only one whose year has a partition. A signed consultation is final: a FHIR update that would
  change its row, or a delete, is 409 ``consultation_signed`` (the REST API's rule and code); an
  unsigned one is deleted (nothing references it: amendments exist only on signed ones).
* Observation ↔ ``observations``: one vital sign (category ``vital-signs``, status ``final``, one
  ``valueQuantity``) per row. A panel with components stays FHIR-only: the projection keeps one
  row per resource id, and a panel would be several rows. A delete removes the row.
* Condition ↔ ``conditions``: a delete marks the row ``entered-in-error`` (the domain's word for a
  withdrawn diagnosis), which reads back as deleted.
* AllergyIntolerance ↔ ``allergies``: a delete removes the row, unless a prescriber's allergy
  override points at it (409 ``allergy_overridden``: set clinicalStatus ``inactive`` instead).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, get_args

import asyncpg

from hims.clinical.models import Allergy, Condition, Observation
from hims.clinical.schemas import ClinicalStatus, VerificationStatus
from hims.consultations.models import Consultation, consultation_partition_filter
from hims.consultations.partitions import partition_name
from hims.core.errors import Conflict
from hims.fhir import repository as repo
from hims.fhir.mappings import allergy_intolerance, condition, encounter, observation
from hims.fhir.mappings._common import pick_coding
from hims.fhir.projection import Candidate, Projector, keeping_extra, register

#: Numeric(10, 3): the largest magnitude an observation value can have.
_MAX_VALUE = Decimal(10) ** 7
#: Encounter statuses a consultation has (any other stays FHIR-only).
_ENCOUNTER_STATUSES = ("in-progress", "finished")
ENTERED_IN_ERROR = "entered-in-error"


def _signed(message: str) -> Conflict:
    return Conflict(message, code="consultation_signed")


def _encounter_problem(candidate: Candidate) -> str | None:
    """Why this Encounter is no consultation, or would change its consultation unlawfully."""
    resource, row, existing = candidate.resource, candidate.row, candidate.existing
    if resource.get("status") not in _ENCOUNTER_STATUSES:
        return f"status {resource.get('status')!r} has no consultation"
    kind = resource.get("class")
    if not isinstance(kind, dict) or kind.get("code") != "AMB":
        return "only an ambulatory (AMB) encounter is a consultation"
    if existing is None:
        return None
    if existing["started_at"] != row["started_at"]:
        return "period.start of a consultation cannot change"
    if existing["status"] != "in_progress" and row["status"] == "in_progress":
        return "a finished consultation cannot be reopened"
    return None


async def complete_encounters(conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """Refuse changes to signed consultations; keep Encounters no partition can hold FHIR-only."""
    years = {c.row["started_at"].year for c in candidates if c.existing is None}
    prepared: set[str] = set()
    if years:
        match, names = repo.any_of("relname", 1, [partition_name(y) for y in years], "text")
        sql = f"SELECT relname FROM pg_class WHERE {match} AND relispartition"  # noqa: S608
        prepared = {r["relname"] for r in await conn.fetch(sql, names)}
    for c in candidates:
        existing = c.existing
        if existing is not None and existing["status"] == "signed":
            if any(existing[name] != value for name, value in c.row.items()):
                raise _signed(f"Encounter/{c.id} is a signed consultation; add an amendment instead.")
            continue
        c.problem = _encounter_problem(c)
        if existing is None and partition_name(c.row["started_at"].year) not in prepared:
            c.problem = f"no partition holds consultations of {c.row['started_at'].year}"


async def refuse_signed_deletes(_conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
    """A signed consultation is part of the legal record: it cannot be deleted."""
    for row in rows:
        if row["status"] == "signed":
            raise _signed(f"Encounter/{row['id']} is a signed consultation and cannot be deleted.")


def _is_vital_sign(resource: dict[str, Any]) -> bool:
    return any(
        coding.get("code") == "vital-signs"
        for cc in resource.get("category") or []
        for coding in cc.get("coding") or []
    )


def screen_observation(resource: dict[str, Any]) -> str | None:
    """Why this Observation cannot be one vital-sign row, before it is mapped (most are not one:
    labs, surveys, panels)."""
    if resource.get("component"):
        return "a panel with components is several rows, not one"
    if not _is_vital_sign(resource):
        return "only vital signs are recorded as observations"
    if resource.get("status") != "final":
        return "only a final observation is recorded"
    if pick_coding(resource.get("code"), observation.LOINC).get("system") != observation.LOINC:
        return "a vital sign is coded in LOINC"
    return None


async def complete_observations(_conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """Keep values too large for a vital sign FHIR-only; give a vitals group to a value measured alone."""
    for c in candidates:
        if abs(c.row["value"]) >= _MAX_VALUE:
            c.problem = "value is too large"
        if c.row["group_id"] is None:
            c.row["group_id"] = c.existing["group_id"] if c.existing is not None else uuid.uuid4()


_CLINICAL_STATUSES = get_args(ClinicalStatus)
_VERIFICATION_STATUSES = get_args(VerificationStatus)


async def complete_conditions(_conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """The statuses must be the domain's; abatement cannot precede onset."""
    for c in candidates:
        row = c.row
        if row["clinical_status"] not in _CLINICAL_STATUSES:
            c.problem = f"clinical status {row['clinical_status']!r} is not one we record"
        elif row["verification_status"] not in _VERIFICATION_STATUSES:
            c.problem = f"verification status {row['verification_status']!r} is not one we record"
        elif row["onset_date"] and row["abatement_date"] and row["abatement_date"] < row["onset_date"]:
            c.problem = "abatement is before onset"


async def refuse_overridden_deletes(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> None:
    """An allergy a prescriber overrode is evidence of that decision: it cannot be deleted."""
    used = await conn.fetchval(
        "SELECT allergy_id FROM allergy_overrides WHERE allergy_id = ANY($1::uuid[]) LIMIT 1",
        [r["id"] for r in rows],
    )
    if used is not None:
        raise Conflict(
            f"AllergyIntolerance/{used} was overridden when prescribing and cannot be deleted; "
            "set its clinicalStatus to inactive instead.",
            code="allergy_overridden",
        )


ENCOUNTER = register(
    Projector(
        resource_type="Encounter",
        model=Consultation,
        to_row=encounter.to_row,
        to_resource=keeping_extra(encounter),
        rank=70,
        required=("patient_id", "started_at"),
        references={
            "patient_id": "patients",
            "practitioner_id": "practitioners",
            "appointment_id": "appointments",
        },
        complete=complete_encounters,
        upsert_key=("id", "started_at"),
        check_delete=refuse_signed_deletes,
        partition_filter=consultation_partition_filter,
    )
)

OBSERVATION = register(
    Projector(
        resource_type="Observation",
        model=Observation,
        to_row=observation.to_row,
        to_resource=keeping_extra(observation),
        rank=80,
        required=("patient_id", "code", "display", "value", "unit", "effective_at"),
        references={"patient_id": "patients", "consultation_id": "consultation_keys"},
        screen=screen_observation,
        complete=complete_observations,
    )
)

CONDITION = register(
    Projector(
        resource_type="Condition",
        model=Condition,
        to_row=condition.to_row,
        to_resource=keeping_extra(condition),
        rank=80,
        required=("patient_id", "code", "display"),
        references={"patient_id": "patients", "consultation_id": "consultation_keys"},
        complete=complete_conditions,
        delete_sets={"verification_status": f"'{ENTERED_IN_ERROR}'"},
        is_deleted=lambda row: row.get("verification_status") == ENTERED_IN_ERROR,
    )
)

ALLERGY_INTOLERANCE = register(
    Projector(
        resource_type="AllergyIntolerance",
        model=Allergy,
        to_row=allergy_intolerance.to_row,
        to_resource=keeping_extra(allergy_intolerance),
        rank=80,
        required=("patient_id", "substance"),
        references={"patient_id": "patients"},
        check_delete=refuse_overridden_deletes,
    )
)
