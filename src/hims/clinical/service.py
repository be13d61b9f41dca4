"""Clinical record rules: vitals, problems, allergies, prescriptions (allergy check), labs.

The one home of every clinical rule, whichever way a record arrives (REST, FHIR, a bundle, an
import, the seeder): each record type has generic functions every channel calls (``record_…``
or ``add_…`` to create, ``revise_…`` to change, ``remove_…`` to delete), batch-capable for
imports, and the REST endpoints are thin wrappers over them. Works on a driver connection; each
write is one statement with its PHI log rows and the FHIR rendering. No HTTP, no commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, get_args

import asyncpg
import structlog

from hims.audit.service import log_part, record
from hims.clinical import repository as repo
from hims.clinical.allergy_check import AllergyFacts, find_conflicts
from hims.clinical.coding import icd10cm_lookup, icd10cm_size, loinc_is_valid
from hims.clinical.models import ICD10CM, LOINC, RXNORM, SNOMED
from hims.clinical.schemas import (
    AllergyCreate,
    AllergyStatus,
    AllergyUpdate,
    ClinicalStatus,
    ConditionCreate,
    ConditionUpdate,
    LabOrderCreate,
    LabResultCreate,
    PrescriptionCreate,
    PrescriptionUpdate,
    Severity,
    VerificationStatus,
    VitalsCreate,
)
from hims.clinical.vitals import BY_CODE, INPUT_FIELDS, VITAL_SIGNS, bmi, interpret, is_possible
from hims.consultations import service as consultations
from hims.core import records
from hims.core.errors import Conflict, NotFound, ValidationFailed, field_error
from hims.core.etag import check_version
from hims.core.records import Row
from hims.core.security import Actor
from hims.patients import service as patients

log = structlog.get_logger("hims.clinical")
_FUTURE_SLACK = timedelta(minutes=5)

#: FHIR resource types used in the PHI access log.
OBSERVATION, CONDITION, ALLERGY, MEDICATION_REQUEST, LAB_ORDER = (
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "ServiceRequest",
)
ALLERGY_OVERRIDE = "AllergyOverride"
ENTERED_IN_ERROR = "entered-in-error"
CLINICAL_STATUSES = get_args(ClinicalStatus)
VERIFICATION_STATUSES = get_args(VerificationStatus)
SEVERITIES = get_args(Severity)
ALLERGY_STATUSES = get_args(AllergyStatus)
CONDITION_SYSTEMS = (ICD10CM, SNOMED)
ALLERGY_SYSTEMS = (RXNORM, SNOMED)

#: Allowed status changes; completed/resulted and cancelled are final.
PRESCRIPTION_TRANSITIONS: dict[str, set[str]] = {
    "active": {"completed", "cancelled", "on-hold"},
    "on-hold": {"active", "cancelled"},
    "completed": set(),
    "cancelled": set(),
}
LAB_TRANSITIONS: dict[str, set[str]] = {
    "ordered": {"collected", "resulted", "cancelled"},
    "collected": {"resulted", "cancelled"},
    "resulted": set(),
    "cancelled": set(),
}
#: The LOINC codes of the vital signs we record.
VITAL_CODES = frozenset(BY_CODE)
#: Statuses in which a prescription is being taken (an allergy check applies to them).
PRESCRIBING = ("active", "on-hold")


@dataclass
class New:
    """One record to create: column values, and for the FHIR API its id, version and the elements
    the row does not hold."""

    values: Row
    id: uuid.UUID | None = None
    version: int = 1
    extra: dict[str, Any] | None = None
    #: Prescriptions only: why the prescriber goes ahead despite allergy conflicts.
    override_reason: str | None = None


@dataclass
class PrescriptionWithOverrides:
    """A prescription and the allergy overrides it needed."""

    prescription: Row
    overrides: list[Row] = field(default_factory=list)


def _raise(errors: list[dict[str, Any]], message: str = "The record has invalid fields.") -> None:
    if errors:
        raise ValidationFailed(message, errors=errors)


def _not_future(name: str, value: datetime | date | None, now: datetime) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return [field_error(name, "Give a time zone.", "naive_datetime")]
        future = value > now + _FUTURE_SLACK
    else:
        future = value > now.date()
    return [field_error(name, "Cannot be in the future.", "future")] if future else []


def _length(row: Row, table: repo.RecordTable) -> list[dict[str, Any]]:
    errors = []
    for column in table.table.c:
        limit = getattr(column.type, "length", None)
        value = row.get(column.name)
        if limit and isinstance(value, str) and len(value) > limit:
            errors.append(field_error(column.name, f"At most {limit} characters.", "too_long"))
    return errors


def _complete(table: repo.RecordTable, new: New, now: datetime) -> Row:
    """A full row for ``new`` (every column; id, version, times and extra filled)."""
    row = dict.fromkeys(table.columns) | {k: v for k, v in new.values.items() if k in table.columns}
    row.update(id=new.id or uuid.uuid4(), extra=new.extra, created_at=now, updated_at=now)
    if "version" in row:
        row["version"] = new.version
    return row


async def _check_owners(conn: asyncpg.Connection, rows: Sequence[Row]) -> None:
    """Every patient live; every consultation linked is the same patient's (422 otherwise)."""
    await patients.require_live_patients(conn=conn, patient_ids=[r["patient_id"] for r in rows])
    linked = [r for r in rows if r.get("consultation_id")]
    owners = await consultations.consultation_owners(conn=conn, ids=[r["consultation_id"] for r in linked])
    for row in linked:
        if owners.get(row["consultation_id"]) != row["patient_id"]:
            raise ValidationFailed(
                errors=[field_error("consultation_id", "No such consultation for this patient.", "not_found")]
            )


#: Who did it and when: a change that leaves them out (a FHIR version without them) keeps the row's.
_KEPT = frozenset(
    {
        "recorded_by",
        "prescribed_by",
        "prescribed_at",
        "ordered_by",
        "ordered_at",
        "collected_at",
        "resulted_at",
        "group_id",
    }
)


def _next(
    prior: Row, changes: Row, table: repo.RecordTable, extra: dict[str, Any] | None, keep_extra: bool
) -> Row:
    """``prior`` with ``changes`` applied as the next version (id, patient, creation and who-did-it
    columns the change leaves empty are kept)."""
    row = {
        **prior,
        **{
            k: v
            for k, v in changes.items()
            if k in table.columns and k not in ("id", "created_at") and not (k in _KEPT and v is None)
        },
    }
    row.update(
        version=prior["version"] + 1,
        updated_at=datetime.now(UTC),
        extra=extra if extra is not None or not keep_extra else prior["extra"],
    )
    if row["patient_id"] != prior["patient_id"]:
        raise ValidationFailed(
            errors=[
                field_error("patient_id", "A record stays with its patient (a merge moves it).", "immutable")
            ]
        )
    return row


async def _record(
    conn: asyncpg.Connection,
    table: repo.RecordTable,
    patient_id: uuid.UUID,
    record_id: uuid.UUID,
    *,
    lock: bool = False,
    expected_version: int | None = None,
) -> Row:
    found = (await table.get_many(conn, [record_id], lock=lock)).get(record_id)
    if found is None or found["patient_id"] != patient_id:
        raise NotFound(
            f"No such {table.name.rstrip('s').replace('_', ' ')} for this patient.", code="not_found"
        )
    # The version the client read (If-Match, whichever API it read from): 412 when stale.
    check_version(found["version"], expected_version)
    return found


async def _read_logged(
    conn: asyncpg.Connection,
    actor: Actor,
    table: repo.RecordTable,
    resource_type: str,
    patient_id: uuid.UUID,
    record_id: uuid.UUID,
) -> Row:
    row = await _record(conn, table, patient_id, record_id)
    await record(
        conn, actor=actor, action="read", resource_type=resource_type, accesses=[(patient_id, str(record_id))]
    )
    return row


async def _list_logged(
    conn: asyncpg.Connection, actor: Actor, resource_type: str, patient_id: uuid.UUID, rows: Sequence[Row]
) -> None:
    """One ``search`` log row per record listed (one for the patient when there are none)."""
    await record(
        conn,
        actor=actor,
        action="search",
        resource_type=resource_type,
        accesses=[(patient_id, str(r["id"])) for r in rows] or [(patient_id, None)],
    )


async def _require_patient(conn: asyncpg.Connection, patient_id: uuid.UUID) -> None:
    await patients.require_patient_record(conn=conn, patient_id=patient_id)


# ---------------------------------------------------------------- observations


def _observation_errors(row: Row, now: datetime) -> list[dict[str, Any]]:
    """A vital sign: a code of the vital-signs table, its unit, a possible value."""
    vital = BY_CODE.get(str(row.get("code")))
    if vital is None:
        return [field_error("code", f"{row.get('code')!r} is not a vital sign we record.", "unknown_code")]
    errors = _not_future("effective_at", row.get("effective_at"), now)
    if row.get("effective_at") is None:
        errors.append(field_error("effective_at", "When was it measured?", "required"))
    value = row.get("value")
    if value is None:
        errors.append(field_error(vital.field, "A vital sign has a value.", "required"))
    elif row.get("unit") != vital.unit:
        errors.append(
            field_error(
                vital.field,
                f"{vital.display} is recorded in {vital.unit}, not {row.get('unit')}.",
                "wrong_unit",
            )
        )
    elif not is_possible(vital, value):
        low, high = vital.possible
        errors.append(
            field_error(
                vital.field,
                f"{value} {vital.unit} is not physiologically possible ({low} to {high}).",
                "impossible",
            )
        )
    return errors


def _flagged(row: Row) -> Row:
    """The flags and reference range of the vital-signs table (never the client's)."""
    vital = BY_CODE[row["code"]]
    row.update(
        code_system=LOINC,
        display=vital.display,
        interpretation=interpret(vital, row["value"]),
        reference_low=vital.normal[0],
        reference_high=vital.normal[1],
        derived=bool(row.get("derived")),
    )
    return row


async def record_observations(*, conn: asyncpg.Connection, actor: Actor, items: Sequence[New]) -> list[Row]:
    """Record vital signs (all or none): impossible values refused (422), abnormal ones flagged."""
    now = datetime.now(UTC)
    rows = []
    for item in items:
        row = _complete(repo.OBSERVATIONS, item, now)
        _raise(_observation_errors(row, now), "Some vital signs are invalid.")
        row["effective_at"] = row["effective_at"].astimezone(UTC)
        row["group_id"] = row["group_id"] or uuid.uuid4()
        row["recorded_by"] = row["recorded_by"] or actor.user_id
        rows.append(_flagged(row))
    await _check_owners(conn, rows)
    await repo.OBSERVATIONS.insert(conn, actor, rows, [log_part(actor, "create", OBSERVATION)])
    return rows


async def revise_observation(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """A corrected vital sign (FHIR update): the same rules as a new one."""
    row = _next(prior, changes, repo.OBSERVATIONS, extra, keep_extra)
    _raise(_observation_errors(row, datetime.now(UTC)), "Some vital signs are invalid.")
    row["group_id"] = row["group_id"] or prior["group_id"]
    await _check_owners(conn, [row])
    written = await repo.OBSERVATIONS.update(
        conn, actor, [_flagged(row)], [log_part(actor, "update", OBSERVATION)]
    )
    return row if written else None


async def remove_observation(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Delete a vital sign."""
    row = {**prior, "version": prior["version"] + 1, "updated_at": datetime.now(UTC)}
    written = await repo.OBSERVATIONS.delete(conn, actor, [row], [log_part(actor, "delete", OBSERVATION)])
    return row if written else None


async def record_vitals(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, data: VitalsCreate
) -> list[Row]:
    """Record a vitals set through REST: both blood pressures or neither, BMI derived."""
    values: dict[str, Decimal] = {
        name: value for name in INPUT_FIELDS if (value := getattr(data, name)) is not None
    }
    errors = []
    if not values:
        errors.append(field_error("body", "Send at least one vital sign.", "empty"))
    for name, value in values.items():
        vital = VITAL_SIGNS[name]
        if not is_possible(vital, value):
            low, high = vital.possible
            errors.append(
                field_error(
                    name,
                    f"{value} {vital.unit} is not physiologically possible ({low} to {high}).",
                    "impossible",
                )
            )
    if ("systolic_bp" in values) != ("diastolic_bp" in values):
        missing = "diastolic_bp" if "systolic_bp" in values else "systolic_bp"
        errors.append(field_error(missing, "Blood pressure needs systolic and diastolic.", "required"))
    elif "systolic_bp" in values and values["systolic_bp"] <= values["diastolic_bp"]:
        errors.append(field_error("diastolic_bp", "Must be lower than systolic.", "inconsistent"))
    if not errors and "body_weight" in values and "body_height" in values:
        derived = bmi(values["body_weight"], values["body_height"])
        if not is_possible(VITAL_SIGNS["bmi"], derived):
            errors.append(
                field_error(
                    "body_height", f"Weight and height give an impossible BMI ({derived}).", "impossible"
                )
            )
        else:
            values["bmi"] = derived
    _raise(errors, "Some vital signs are invalid.")
    await _require_patient(conn, patient_id)
    effective_at = data.effective_at or datetime.now(UTC)
    group_id = uuid.uuid4()
    items = [
        New(
            {
                "patient_id": patient_id,
                "consultation_id": data.consultation_id,
                "group_id": group_id,
                "code": VITAL_SIGNS[name].loinc,
                "value": value,
                "unit": VITAL_SIGNS[name].unit,
                "derived": name == "bmi",
                "effective_at": effective_at,
                "recorded_by": actor.user_id,
            }
        )
        for name, value in values.items()
    ]
    return await record_observations(conn=conn, actor=actor, items=items)


async def list_observations(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    code: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Row]:
    """A patient's observations, newest first."""
    await _require_patient(conn, patient_id)
    rows = await repo.observations(conn, patient_id, code=code, limit=limit, offset=offset)
    await _list_logged(conn, actor, OBSERVATION, patient_id, rows)
    return rows


# ---------------------------------------------------------------- conditions


def _condition_errors(row: Row, now: datetime) -> list[dict[str, Any]]:
    errors = []
    if row.get("code_system") not in CONDITION_SYSTEMS:
        errors.append(
            field_error("code_system", "A condition is coded in ICD-10-CM or SNOMED CT.", "unknown_system")
        )
    elif not row.get("code"):
        errors.append(field_error("code", "A condition has a code.", "required"))
    elif row["code_system"] == ICD10CM:
        found = icd10cm_lookup(str(row["code"]))
        if found is None:
            errors.append(field_error("code", f"{row['code']!r} is not an ICD-10-CM code.", "unknown_code"))
        else:
            row["code"], row["display"] = found[0], found[1][:300]
    if not row.get("display"):
        row["display"] = row.get("code")
    if row.get("clinical_status") not in CLINICAL_STATUSES:
        errors.append(field_error("clinical_status", f"One of {', '.join(CLINICAL_STATUSES)}.", "invalid"))
    if row.get("verification_status") not in VERIFICATION_STATUSES:
        errors.append(
            field_error("verification_status", f"One of {', '.join(VERIFICATION_STATUSES)}.", "invalid")
        )
    errors += _not_future("onset_date", row.get("onset_date"), now)
    errors += _not_future("abatement_date", row.get("abatement_date"), now)
    onset, abatement = row.get("onset_date"), row.get("abatement_date")
    if onset and abatement and abatement < onset:
        errors.append(field_error("abatement_date", "Before the onset date.", "before_onset"))
    return errors + _length(row, repo.CONDITIONS)


async def add_conditions(*, conn: asyncpg.Connection, actor: Actor, items: Sequence[New]) -> list[Row]:
    """Add problem-list entries (all or none)."""
    now = datetime.now(UTC)
    rows = []
    for item in items:
        row = _complete(repo.CONDITIONS, item, now)
        row["clinical_status"] = row["clinical_status"] or "active"
        row["verification_status"] = row["verification_status"] or "confirmed"
        row["recorded_by"] = row["recorded_by"] or actor.user_id
        _raise(_condition_errors(row, now))
        rows.append(row)
    await _check_owners(conn, rows)
    await repo.CONDITIONS.insert(conn, actor, rows, [log_part(actor, "create", CONDITION)])
    return rows


async def add_condition(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, data: ConditionCreate
) -> Row:
    """Add a problem-list entry through REST (ICD-10-CM, checked against the code set)."""
    await _require_patient(conn, patient_id)
    values = {**data.model_dump(), "patient_id": patient_id, "code_system": ICD10CM}
    (row,) = await add_conditions(conn=conn, actor=actor, items=[New(values)])
    return row


async def revise_condition(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """A condition's next version (status, dates, note; FHIR: the whole condition)."""
    row = _next(prior, changes, repo.CONDITIONS, extra, keep_extra)
    _raise(_condition_errors(row, datetime.now(UTC)))
    await _check_owners(conn, [row])
    written = await repo.CONDITIONS.update(conn, actor, [row], [log_part(actor, "update", CONDITION)])
    return row if written else None


async def update_condition(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    condition_id: uuid.UUID,
    data: ConditionUpdate,
    expected_version: int | None = None,
) -> Row:
    """Change a condition's status, dates or note through REST."""
    prior = await _record(conn, repo.CONDITIONS, patient_id, condition_id, expected_version=expected_version)
    return _written(
        await revise_condition(
            conn=conn, actor=actor, prior=prior, changes=data.model_dump(exclude_unset=True)
        )
    )


async def remove_condition(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Withdraw a diagnosis: it becomes entered-in-error (kept, read as deleted in FHIR)."""
    return await revise_condition(
        conn=conn, actor=actor, prior=prior, changes={"verification_status": ENTERED_IN_ERROR}
    )


async def get_condition(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, condition_id: uuid.UUID
) -> Row:
    """One condition."""
    return await _read_logged(conn, actor, repo.CONDITIONS, CONDITION, patient_id, condition_id)


async def list_conditions(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> list[Row]:
    """The patient's problem list (every status), newest first."""
    await _require_patient(conn, patient_id)
    rows = await repo.CONDITIONS.of_patient(
        conn, patient_id, order_by="created_at DESC, id", limit=limit, offset=offset
    )
    await _list_logged(conn, actor, CONDITION, patient_id, rows)
    return rows


# ---------------------------------------------------------------- allergies


def _allergy_errors(row: Row) -> list[dict[str, Any]]:
    errors = []
    row["substance"] = (row.get("substance") or "").strip()
    if not row["substance"]:
        errors.append(field_error("substance", "An allergy names its substance.", "required"))
    if (row.get("code") is None) != (row.get("code_system") is None):
        missing = "code_system" if row.get("code") else "code"
        errors.append(field_error(missing, "Give the code and its system together.", "required"))
    elif row.get("code_system") is not None and row["code_system"] not in ALLERGY_SYSTEMS:
        errors.append(
            field_error("code_system", "An allergy is coded in RxNorm or SNOMED CT.", "unknown_system")
        )
    if row.get("severity") not in SEVERITIES:
        errors.append(field_error("severity", f"One of {', '.join(SEVERITIES)}.", "invalid"))
    if row.get("status") not in ALLERGY_STATUSES:
        errors.append(field_error("status", f"One of {', '.join(ALLERGY_STATUSES)}.", "invalid"))
    return errors + _length(row, repo.ALLERGIES)


async def add_allergies(*, conn: asyncpg.Connection, actor: Actor, items: Sequence[New]) -> list[Row]:
    """Record allergies (all or none)."""
    now = datetime.now(UTC)
    rows = []
    for item in items:
        row = _complete(repo.ALLERGIES, item, now)
        row["status"] = row["status"] or "active"
        row["recorded_by"] = row["recorded_by"] or actor.user_id
        _raise(_allergy_errors(row))
        rows.append(row)
    await _check_owners(conn, rows)
    await repo.ALLERGIES.insert(conn, actor, rows, [log_part(actor, "create", ALLERGY)])
    return rows


async def add_allergy(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, data: AllergyCreate
) -> Row:
    """Record an allergy through REST."""
    await _require_patient(conn, patient_id)
    values = {**data.model_dump(), "patient_id": patient_id}
    values["code_system"] = {"rxnorm": RXNORM, "snomed": SNOMED}.get(data.code_system or "")
    (row,) = await add_allergies(conn=conn, actor=actor, items=[New(values)])
    return row


async def revise_allergy(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """An allergy's next version."""
    row = _next(prior, changes, repo.ALLERGIES, extra, keep_extra)
    _raise(_allergy_errors(row))
    written = await repo.ALLERGIES.update(conn, actor, [row], [log_part(actor, "update", ALLERGY)])
    return row if written else None


async def update_allergy(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    allergy_id: uuid.UUID,
    data: AllergyUpdate,
    expected_version: int | None = None,
) -> Row:
    """Change an allergy's status, severity, reaction or note through REST."""
    prior = await _record(conn, repo.ALLERGIES, patient_id, allergy_id, expected_version=expected_version)
    return _written(
        await revise_allergy(conn=conn, actor=actor, prior=prior, changes=data.model_dump(exclude_unset=True))
    )


async def remove_allergy(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Delete an allergy, unless a prescriber's override is evidence of it (409 ``allergy_overridden``)."""
    if await repo.overridden_allergies(conn, [prior["id"]]):
        raise Conflict(
            f"AllergyIntolerance/{prior['id']} was overridden when prescribing and cannot be deleted; "
            "set its status to inactive instead.",
            code="allergy_overridden",
        )
    row = {**prior, "version": prior["version"] + 1, "updated_at": datetime.now(UTC)}
    written = await repo.ALLERGIES.delete(conn, actor, [row], [log_part(actor, "delete", ALLERGY)])
    return row if written else None


async def get_allergy(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, allergy_id: uuid.UUID
) -> Row:
    """One allergy."""
    return await _read_logged(conn, actor, repo.ALLERGIES, ALLERGY, patient_id, allergy_id)


async def list_allergies(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> list[Row]:
    """Every allergy of the patient (all statuses)."""
    await _require_patient(conn, patient_id)
    rows = await repo.ALLERGIES.of_patient(
        conn, patient_id, order_by="created_at DESC, id", limit=limit, offset=offset
    )
    await _list_logged(conn, actor, ALLERGY, patient_id, rows)
    return rows


# ---------------------------------------------------------------- prescriptions


class AllergyConflict(Conflict):
    """409: the drug conflicts with the patient's active allergies."""

    code = "allergy_conflict"


def _conflict_error(conflicts: Sequence[Any]) -> AllergyConflict:
    return AllergyConflict(
        "The drug conflicts with the patient's active allergies; send override_reason to prescribe anyway.",
        extra={
            "conflicts": [
                {
                    "allergy_id": c.allergy_id,
                    "substance": c.substance,
                    "severity": c.severity,
                    "reaction": c.reaction,
                    "match": c.match,
                }
                for c in conflicts
            ]
        },
    )


def _prescription_errors(row: Row) -> list[dict[str, Any]]:
    errors = []
    row["drug_name"] = (row.get("drug_name") or "").strip()
    if not row["drug_name"]:
        errors.append(field_error("drug_name", "A prescription names its drug.", "required"))
    if row.get("dose_value") is None or row["dose_value"] <= 0:
        errors.append(field_error("dose_value", "A positive dose.", "required"))
    row["dose_unit"] = (row.get("dose_unit") or "").strip()
    if not row["dose_unit"]:
        errors.append(field_error("dose_unit", "The dose's unit (UCUM or a dose form).", "required"))
    if row.get("status") not in PRESCRIPTION_TRANSITIONS:
        errors.append(field_error("status", f"One of {', '.join(PRESCRIPTION_TRANSITIONS)}.", "invalid"))
    days = row.get("duration_days")
    if days is not None and not 1 <= days <= 3650:
        errors.append(field_error("duration_days", "From 1 to 3650 days.", "out_of_range"))
    return errors + _length(row, repo.PRESCRIPTIONS)


async def _allergy_conflicts(conn: asyncpg.Connection, rows: Sequence[Row]) -> dict[uuid.UUID, list[Any]]:
    """Conflicts of each row that prescribes now (active or on hold), by row id."""
    prescribing = [r for r in rows if r["status"] in PRESCRIBING]
    allergies = await repo.active_allergies(conn, [r["patient_id"] for r in prescribing])
    found: dict[uuid.UUID, list[Any]] = {}
    for row in prescribing:
        facts = [
            AllergyFacts(str(a["id"]), a["substance"], a["code"], a["severity"], a["reaction"])
            for a in allergies
            if a["patient_id"] == row["patient_id"]
        ]
        conflicts = find_conflicts(row["drug_name"], row.get("rxnorm_code"), facts)
        if conflicts:
            found[row["id"]] = conflicts
    return found


async def prescribe_many(
    *, conn: asyncpg.Connection, actor: Actor, items: Sequence[New]
) -> list[PrescriptionWithOverrides]:
    """Prescribe (all or none): a drug that conflicts with an active allergy is refused (409
    ``allergy_conflict``) unless the item carries an override reason, which is recorded (who,
    when, why, which allergy). Past prescriptions (completed, cancelled) are records, not
    prescribing, and are not checked."""
    now = datetime.now(UTC)
    rows = []
    for item in items:
        row = _complete(repo.PRESCRIPTIONS, item, now)
        row["status"] = row["status"] or "active"
        row["prescribed_at"] = row["prescribed_at"] or now
        row["prescribed_by"] = row["prescribed_by"] or actor.user_id
        _raise(_prescription_errors(row))
        rows.append(row)
    await _check_owners(conn, rows)
    conflicts = await _allergy_conflicts(conn, rows)
    reasons = {row["id"]: item.override_reason for row, item in zip(rows, items, strict=True)}
    for row_id, found in conflicts.items():
        if not reasons[row_id]:
            raise _conflict_error(found)
    overrides = [
        {
            "id": uuid.uuid4(),
            "prescription_id": row_id,
            "allergy_id": uuid.UUID(c.allergy_id),
            "patient_id": next(r["patient_id"] for r in rows if r["id"] == row_id),
            "substance": c.substance,
            "match": c.match,
            "reason": reasons[row_id],
            "overridden_by": actor.user_id,
            "overridden_by_name": actor.username,
            "overridden_at": now,
        }
        for row_id, found in conflicts.items()
        for c in found
    ]
    async with records.atomic(conn):
        await repo.PRESCRIPTIONS.insert(conn, actor, rows, [log_part(actor, "create", MEDICATION_REQUEST)])
        if overrides:
            await repo.add_overrides(conn, actor, overrides, [log_part(actor, "create", ALLERGY_OVERRIDE)])
    for row_id in conflicts:
        log.warning(
            "allergy_override",
            prescription_id=str(row_id),
            allergies=[c.allergy_id for c in conflicts[row_id]],
        )
    return [
        PrescriptionWithOverrides(row, [o for o in overrides if o["prescription_id"] == row["id"]])
        for row in rows
    ]


async def prescribe(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, data: PrescriptionCreate
) -> PrescriptionWithOverrides:
    """Prescribe through REST (409 ``allergy_conflict`` unless ``override_reason``)."""
    await _require_patient(conn, patient_id)
    values = {**data.model_dump(exclude={"override_reason"}), "patient_id": patient_id, "status": "active"}
    (result,) = await prescribe_many(
        conn=conn, actor=actor, items=[New(values, override_reason=data.override_reason)]
    )
    return result


def _moves(prior: Row, row: Row, transitions: dict[str, set[str]], what: str) -> None:
    """Refuse a status change the domain does not allow, and any change of a final record."""
    before, after = prior["status"], row["status"]
    final = not transitions.get(before)
    changed = any(
        row.get(k) != prior.get(k) for k in row if k not in ("version", "updated_at", "extra", "deleted_at")
    )
    if (before != after and after not in transitions.get(before, set())) or (final and changed):
        raise Conflict(f"A {before} {what} cannot become {after}.", code="invalid_transition")


async def revise_prescription(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """A prescription's next version: status moves as the transitions allow (completed and
    cancelled are final); a change of drug while prescribing is checked against allergies (409)."""
    row = _next(prior, changes, repo.PRESCRIPTIONS, extra, keep_extra)
    row["deleted_at"] = None
    _raise(_prescription_errors(row))
    _moves(prior, row, PRESCRIPTION_TRANSITIONS, "prescription")
    drug_changed = (row["drug_name"], row.get("rxnorm_code")) != (
        prior["drug_name"],
        prior.get("rxnorm_code"),
    )
    if drug_changed or (prior["status"] not in PRESCRIBING and row["status"] in PRESCRIBING):
        conflicts = await _allergy_conflicts(conn, [row])
        if conflicts:
            raise _conflict_error(conflicts[row["id"]])
    await _check_owners(conn, [row])
    written = await repo.PRESCRIPTIONS.update(
        conn, actor, [row], [log_part(actor, "update", MEDICATION_REQUEST)]
    )
    return row if written else None


async def update_prescription(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    prescription_id: uuid.UUID,
    data: PrescriptionUpdate,
    expected_version: int | None = None,
) -> PrescriptionWithOverrides:
    """Change a prescription's status through REST (completed and cancelled are final)."""
    prior = await _record(
        conn, repo.PRESCRIPTIONS, patient_id, prescription_id, expected_version=expected_version
    )
    row = prior
    if data.status != prior["status"]:
        row = _written(
            await revise_prescription(conn=conn, actor=actor, prior=prior, changes={"status": data.status})
        )
    else:
        await record(
            conn,
            actor=actor,
            action="update",
            resource_type=MEDICATION_REQUEST,
            accesses=[(patient_id, str(prescription_id))],
        )
    overrides = (await repo.overrides_for(conn, [prescription_id]))[prescription_id]
    return PrescriptionWithOverrides(row, overrides)


async def remove_prescription(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Delete (FHIR): the row stays (an allergy override may refer to it), cancelled if it was
    still being taken, and reads as deleted."""
    now = datetime.now(UTC)
    status = "cancelled" if prior["status"] in PRESCRIBING else prior["status"]
    row = {**prior, "status": status, "deleted_at": now, "version": prior["version"] + 1, "updated_at": now}
    written = await repo.PRESCRIPTIONS.update(
        conn,
        actor,
        [row],
        [log_part(actor, "delete", MEDICATION_REQUEST)],
        columns=("status", "deleted_at", "version", "updated_at"),
        deleting=True,
    )
    return row if written else None


async def get_prescription(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, prescription_id: uuid.UUID
) -> PrescriptionWithOverrides:
    """One prescription with its overrides."""
    row = await _read_logged(conn, actor, repo.PRESCRIPTIONS, MEDICATION_REQUEST, patient_id, prescription_id)
    return PrescriptionWithOverrides(
        row, (await repo.overrides_for(conn, [prescription_id]))[prescription_id]
    )


async def list_prescriptions(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> list[PrescriptionWithOverrides]:
    """Every prescription of the patient, newest first (overrides fetched in one query)."""
    await _require_patient(conn, patient_id)
    rows = await repo.PRESCRIPTIONS.of_patient(
        conn, patient_id, order_by="prescribed_at DESC, id", limit=limit, offset=offset
    )
    overrides = await repo.overrides_for(conn, [r["id"] for r in rows])
    await _list_logged(conn, actor, MEDICATION_REQUEST, patient_id, rows)
    return [PrescriptionWithOverrides(r, overrides[r["id"]]) for r in rows]


# ---------------------------------------------------------------- labs


def abnormal_flag(value: Decimal, low: Decimal | None, high: Decimal | None) -> str | None:
    """L below the range, H above it, N inside, None without a range."""
    if low is None and high is None:
        return None
    if low is not None and value < low:
        return "L"
    if high is not None and value > high:
        return "H"
    return "N"


def _lab_errors(row: Row) -> list[dict[str, Any]]:
    errors = []
    if not loinc_is_valid(str(row.get("code") or "")):
        errors.append(field_error("code", f"{row.get('code')!r} is not a LOINC code.", "unknown_code"))
    if not row.get("display"):
        row["display"] = row.get("code")
    if row.get("status") not in LAB_TRANSITIONS:
        errors.append(field_error("status", f"One of {', '.join(LAB_TRANSITIONS)}.", "invalid"))
    low, high = row.get("reference_low"), row.get("reference_high")
    if low is not None and high is not None and low > high:
        errors.append(field_error("reference_low", "Above reference_high.", "inconsistent"))
    if row.get("result_value") is not None:
        row["abnormal_flag"] = abnormal_flag(row["result_value"], low, high)
    return errors + _length(row, repo.LAB_ORDERS)


async def order_labs(*, conn: asyncpg.Connection, actor: Actor, items: Sequence[New]) -> list[Row]:
    """Order tests by LOINC code (check digit verified), all or none."""
    now = datetime.now(UTC)
    rows = []
    for item in items:
        row = _complete(repo.LAB_ORDERS, item, now)
        row["code_system"] = LOINC
        row["code"] = str(row.get("code") or "").strip()
        row["status"] = row["status"] or "ordered"
        row["ordered_at"] = row["ordered_at"] or now
        row["ordered_by"] = row["ordered_by"] or actor.user_id
        if row["status"] == "ordered" and row.get("collected_at"):
            row["status"] = "collected"
        _raise(_lab_errors(row))
        rows.append(row)
    await _check_owners(conn, rows)
    await repo.LAB_ORDERS.insert(conn, actor, rows, [log_part(actor, "create", LAB_ORDER)])
    return rows


async def order_lab(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, data: LabOrderCreate
) -> Row:
    """Order a test through REST."""
    await _require_patient(conn, patient_id)
    (row,) = await order_labs(
        conn=conn, actor=actor, items=[New({**data.model_dump(), "patient_id": patient_id})]
    )
    return row


async def revise_lab(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """A lab order's next version: it only moves forward (ordered → collected → resulted, or
    cancelled); resulted and cancelled are final."""
    row = _next(prior, changes, repo.LAB_ORDERS, extra, keep_extra)
    row["deleted_at"] = None
    if row["status"] == "ordered" and row.get("collected_at"):
        row["status"] = "collected"
    _raise(_lab_errors(row))
    _moves(prior, row, LAB_TRANSITIONS, "lab order")
    now = datetime.now(UTC)
    if row["status"] in ("collected", "resulted"):
        row["collected_at"] = row["collected_at"] or now
    if row["status"] == "resulted":
        row["resulted_at"] = row["resulted_at"] or now
    await _check_owners(conn, [row])
    written = await repo.LAB_ORDERS.update(conn, actor, [row], [log_part(actor, "update", LAB_ORDER)])
    return row if written else None


async def _lab_step(
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    order_id: uuid.UUID,
    changes: Row,
    allowed_from: set[str],
    expected_version: int | None,
) -> Row:
    prior = await _record(conn, repo.LAB_ORDERS, patient_id, order_id, expected_version=expected_version)
    if prior["status"] not in allowed_from:
        raise Conflict(
            f"A lab order that is {prior['status']} cannot become {changes['status']}.",
            code="invalid_transition",
        )
    return _written(await revise_lab(conn=conn, actor=actor, prior=prior, changes=changes))


async def collect_lab(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    order_id: uuid.UUID,
    expected_version: int | None = None,
) -> Row:
    """The specimen was collected."""
    return await _lab_step(
        conn,
        actor,
        patient_id,
        order_id,
        {"status": "collected", "collected_at": datetime.now(UTC)},
        {"ordered"},
        expected_version,
    )


async def result_lab(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    order_id: uuid.UUID,
    data: LabResultCreate,
    expected_version: int | None = None,
) -> Row:
    """Record the result; the abnormal flag is computed from the reference range."""
    low, high = data.reference_low, data.reference_high
    if low is not None and high is not None and low > high:
        raise ValidationFailed(errors=[field_error("reference_low", "Above reference_high.", "inconsistent")])
    changes = {
        "status": "resulted",
        "result_value": data.value,
        "result_unit": data.unit,
        "reference_low": low,
        "reference_high": high,
    }
    return await _lab_step(
        conn, actor, patient_id, order_id, changes, {"ordered", "collected"}, expected_version
    )


async def cancel_lab(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    order_id: uuid.UUID,
    expected_version: int | None = None,
) -> Row:
    """Cancel an order that has no result yet."""
    return await _lab_step(
        conn, actor, patient_id, order_id, {"status": "cancelled"}, {"ordered", "collected"}, expected_version
    )


async def remove_lab(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Delete (FHIR): an order without a result is cancelled and reads as deleted; a resulted
    one is part of the record (409 ``invalid_transition``)."""
    if prior["status"] == "resulted":
        raise Conflict("A resulted lab order cannot be deleted.", code="invalid_transition")
    now = datetime.now(UTC)
    row = {
        **prior,
        "status": "cancelled",
        "deleted_at": now,
        "version": prior["version"] + 1,
        "updated_at": now,
    }
    written = await repo.LAB_ORDERS.update(
        conn,
        actor,
        [row],
        [log_part(actor, "delete", LAB_ORDER)],
        columns=("status", "deleted_at", "version", "updated_at"),
        deleting=True,
    )
    return row if written else None


async def get_lab(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, order_id: uuid.UUID
) -> Row:
    """One lab order."""
    return await _read_logged(conn, actor, repo.LAB_ORDERS, LAB_ORDER, patient_id, order_id)


async def list_labs(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> list[Row]:
    """The patient's lab orders, newest first."""
    await _require_patient(conn, patient_id)
    rows = await repo.LAB_ORDERS.of_patient(
        conn, patient_id, order_by="ordered_at DESC, id", limit=limit, offset=offset
    )
    await _list_logged(conn, actor, LAB_ORDER, patient_id, rows)
    return rows


# ---------------------------------------------------------------- loads, merge, chart


def _written(row: Row | None) -> Row:
    """A REST change that lost its race to another writer (the record changed meanwhile)."""
    if row is None:
        raise Conflict("The record changed while saving; read it again.", code="version_mismatch")
    return row


#: Each clinical record type's table, by FHIR type (for the FHIR adapters' loads).
TABLES: dict[str, repo.RecordTable] = {
    OBSERVATION: repo.OBSERVATIONS,
    CONDITION: repo.CONDITIONS,
    ALLERGY: repo.ALLERGIES,
    MEDICATION_REQUEST: repo.PRESCRIPTIONS,
    LAB_ORDER: repo.LAB_ORDERS,
}


async def load(
    conn: asyncpg.Connection, resource_type: str, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Current rows of one record type (by its FHIR type), for a caller about to change them."""
    return await TABLES[resource_type].get_many(conn, ids, lock=lock)


async def move_patient_records(
    conn: asyncpg.Connection, actor: Actor, from_id: uuid.UUID, into_id: uuid.UUID
) -> int:
    """Merge mover: every clinical record of ``from_id`` becomes the survivor's (a new version each)."""
    now = datetime.now(UTC)
    moved = 0
    for resource_type, table in TABLES.items():
        rows = await table.of_patient(conn, from_id, lock=True)
        if rows:
            new = [{**r, "patient_id": into_id, "version": r["version"] + 1, "updated_at": now} for r in rows]
            await table.update(
                conn,
                actor,
                new,
                [log_part(actor, "merge", resource_type)],
                columns=("patient_id", "version", "updated_at"),
            )
            moved += len(new)
    moved += await repo.move_overrides(
        conn, actor, from_id, into_id, [log_part(actor, "merge", ALLERGY_OVERRIDE)]
    )
    return moved


async def chart_records(conn: asyncpg.Connection, patient_id: uuid.UUID) -> dict[str, list[Row]]:
    """The chart's clinical sections (a fixed number of queries; the chart logs the access)."""
    statuses = ", ".join(f"'{s}'" for s in repo.ACTIVE_PROBLEM_STATUSES)
    return {
        "problems": await repo.CONDITIONS.of_patient(
            conn,
            patient_id,
            where=f" AND clinical_status IN ({statuses})",
            order_by="onset_date DESC NULLS LAST, created_at DESC",
        ),
        "allergies": await repo.active_allergies(conn, [patient_id]),
        "prescriptions": await repo.PRESCRIPTIONS.of_patient(
            conn, patient_id, where=" AND status = 'active'", order_by="prescribed_at DESC"
        ),
        "vitals": await repo.latest_vitals(conn, patient_id),
    }


def code_lists() -> dict[str, int]:
    """The code lists the clinical rules check against (shipped with the package): name → size."""
    return {"ICD-10-CM": icd10cm_size(), "LOINC vital signs": len(VITAL_CODES)}
