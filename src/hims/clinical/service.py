"""Clinical record rules: vitals, problems, allergies, prescriptions (allergy check), labs.

No HTTP, no commit. Every function writes the PHI access log in the caller's transaction:
reads and writes of one record log (patient, record id); lists log one row for the patient.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit.service import record_phi_access
from hims.clinical import repository as repo
from hims.clinical.allergy_check import AllergyFacts, find_conflicts
from hims.clinical.coding import icd10cm_lookup, loinc_is_valid
from hims.clinical.models import (
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    Allergy,
    AllergyOverride,
    Condition,
    LabOrder,
    Observation,
    Prescription,
)
from hims.clinical.schemas import (
    AllergyCreate,
    AllergyUpdate,
    ConditionCreate,
    ConditionUpdate,
    LabOrderCreate,
    LabResultCreate,
    PrescriptionCreate,
    PrescriptionUpdate,
    VitalsCreate,
)
from hims.clinical.vitals import INPUT_FIELDS, VITAL_SIGNS, bmi, interpret, is_possible
from hims.consultations.service import consultation_belongs_to
from hims.core.errors import Conflict, NotFound, ValidationFailed, field_error
from hims.core.security import Actor

log = structlog.get_logger("hims.clinical")
_FUTURE_SLACK = timedelta(minutes=5)

#: FHIR resource types used in the PHI access log.
OBSERVATION, CONDITION, ALLERGY, MEDICATION_REQUEST, LAB_ORDER = (
    "Observation",
    "Condition",
    "AllergyIntolerance",
    "MedicationRequest",
    "LabOrder",
)

#: Allowed prescription status changes (completed and cancelled are final).
PRESCRIPTION_TRANSITIONS = {
    "active": {"completed", "cancelled", "on-hold"},
    "on-hold": {"active", "cancelled"},
    "completed": set(),
    "cancelled": set(),
}


async def _log(
    session: AsyncSession,
    actor: Actor,
    action: str,
    resource_type: str,
    patient_id: uuid.UUID,
    ids: Sequence[uuid.UUID | None],
) -> None:
    await record_phi_access(
        session=session,
        actor=actor,
        action=action,
        resource_type=resource_type,
        accesses=[(patient_id, str(i) if i else None) for i in ids],
    )


async def _require_patient(session: AsyncSession, patient_id: uuid.UUID) -> None:
    if not await repo.patient_is_active(session, patient_id):
        raise NotFound("No such patient.", code="patient_not_found")


async def _check_consultation(
    session: AsyncSession, patient_id: uuid.UUID, consultation_id: uuid.UUID | None
) -> None:
    if consultation_id and not await consultation_belongs_to(
        session=session, consultation_id=consultation_id, patient_id=patient_id
    ):
        raise ValidationFailed(
            errors=[field_error("consultation_id", "No such consultation for this patient.", "not_found")]
        )


def _not_future(name: str, value: datetime | date | None) -> None:
    if value is None:
        return
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValidationFailed(errors=[field_error(name, "Give a time zone.", "naive_datetime")])
        future = value > datetime.now(UTC) + _FUTURE_SLACK
    else:
        future = value > datetime.now(UTC).date()
    if future:
        raise ValidationFailed(errors=[field_error(name, "Cannot be in the future.", "future")])


async def _record(
    session: AsyncSession,
    model: type[Any],
    patient_id: uuid.UUID,
    record_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Any:
    row = await repo.get_for_patient(session, model, patient_id, record_id, lock=lock)
    if row is None:
        raise NotFound(f"No such {model.__name__.lower()} for this patient.", code="not_found")
    return row


# ---------------------------------------------------------------- observations


async def record_vitals(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, data: VitalsCreate
) -> list[Observation]:
    """Record a vitals set: impossible values refused (422 per field), abnormal ones flagged."""
    await _require_patient(session, patient_id)
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
    if errors:
        raise ValidationFailed("Some vital signs are invalid.", errors=errors)
    _not_future("effective_at", data.effective_at)
    await _check_consultation(session, patient_id, data.consultation_id)
    effective_at = (data.effective_at or datetime.now(UTC)).astimezone(UTC)
    group_id = uuid.uuid4()
    rows = []
    for name, value in values.items():
        vital = VITAL_SIGNS[name]
        rows.append(
            Observation(
                id=uuid.uuid4(),
                patient_id=patient_id,
                consultation_id=data.consultation_id,
                group_id=group_id,
                code_system=LOINC,
                code=vital.loinc,
                display=vital.display,
                value=value,
                unit=vital.unit,
                interpretation=interpret(vital, value),
                reference_low=vital.normal[0],
                reference_high=vital.normal[1],
                derived=name == "bmi",
                effective_at=effective_at,
                recorded_by=actor.user_id,
            )
        )
    await repo.add_all(session, rows)
    await _log(session, actor, "create", OBSERVATION, patient_id, [r.id for r in rows])
    return rows


async def list_observations(
    *,
    session: AsyncSession,
    actor: Actor,
    patient_id: uuid.UUID,
    code: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Observation]:
    """A patient's observations, newest first."""
    await _require_patient(session, patient_id)
    rows = await repo.observations(session, patient_id, code=code, limit=limit, offset=offset)
    await _log(session, actor, "search", OBSERVATION, patient_id, [None])
    return rows


# ---------------------------------------------------------------- conditions


def _icd(code: str, field_name: str = "code") -> tuple[str, str]:
    found = icd10cm_lookup(code)
    if found is None:
        raise ValidationFailed(
            errors=[field_error(field_name, f"{code!r} is not an ICD-10-CM code.", "unknown_code")]
        )
    return found


async def add_condition(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, data: ConditionCreate
) -> Condition:
    """Add a problem-list entry (ICD-10-CM code checked against the code set)."""
    await _require_patient(session, patient_id)
    code, display = _icd(data.code)
    _not_future("onset_date", data.onset_date)
    await _check_consultation(session, patient_id, data.consultation_id)
    condition = Condition(
        id=uuid.uuid4(),
        patient_id=patient_id,
        consultation_id=data.consultation_id,
        code_system=ICD10CM,
        code=code,
        display=display[:300],
        onset_date=data.onset_date,
        clinical_status=data.clinical_status,
        verification_status=data.verification_status,
        note=data.note,
        recorded_by=actor.user_id,
    )
    await repo.add_all(session, [condition])
    await _log(session, actor, "create", CONDITION, patient_id, [condition.id])
    return condition


async def update_condition(
    *,
    session: AsyncSession,
    actor: Actor,
    patient_id: uuid.UUID,
    condition_id: uuid.UUID,
    data: ConditionUpdate,
) -> Condition:
    """Change a condition's status, dates or note."""
    condition: Condition = await _record(session, Condition, patient_id, condition_id, lock=True)
    changes = data.model_dump(exclude_unset=True)
    _not_future("onset_date", changes.get("onset_date"))
    _not_future("abatement_date", changes.get("abatement_date"))
    for name, value in changes.items():
        setattr(condition, name, value)
    onset, abatement = condition.onset_date, condition.abatement_date
    if onset and abatement and abatement < onset:
        raise ValidationFailed(
            errors=[field_error("abatement_date", "Before the onset date.", "before_onset")]
        )
    await session.flush()
    await _log(session, actor, "update", CONDITION, patient_id, [condition.id])
    return condition


async def get_condition(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, condition_id: uuid.UUID
) -> Condition:
    """One condition."""
    condition: Condition = await _record(session, Condition, patient_id, condition_id)
    await _log(session, actor, "read", CONDITION, patient_id, [condition.id])
    return condition


async def list_conditions(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> Sequence[Condition]:
    """The patient's problem list (every status), newest first."""
    await _require_patient(session, patient_id)
    rows = await repo.list_for_patient(
        session, Condition, patient_id, order_by=Condition.created_at.desc(), limit=limit, offset=offset
    )
    await _log(session, actor, "search", CONDITION, patient_id, [None])
    return rows


# ---------------------------------------------------------------- allergies


async def add_allergy(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, data: AllergyCreate
) -> Allergy:
    """Record an allergy."""
    await _require_patient(session, patient_id)
    if (data.code is None) != (data.code_system is None):
        missing = "code_system" if data.code else "code"
        raise ValidationFailed(
            errors=[field_error(missing, "Give the code and its system together.", "required")]
        )
    allergy = Allergy(
        id=uuid.uuid4(),
        patient_id=patient_id,
        substance=data.substance.strip(),
        code_system={"rxnorm": RXNORM, "snomed": SNOMED}.get(data.code_system or ""),
        code=data.code,
        reaction=data.reaction,
        severity=data.severity,
        status=data.status,
        note=data.note,
        recorded_by=actor.user_id,
    )
    await repo.add_all(session, [allergy])
    await _log(session, actor, "create", ALLERGY, patient_id, [allergy.id])
    return allergy


async def update_allergy(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, allergy_id: uuid.UUID, data: AllergyUpdate
) -> Allergy:
    """Change an allergy's status, severity, reaction or note."""
    allergy: Allergy = await _record(session, Allergy, patient_id, allergy_id, lock=True)
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(allergy, name, value)
    await session.flush()
    await _log(session, actor, "update", ALLERGY, patient_id, [allergy.id])
    return allergy


async def get_allergy(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, allergy_id: uuid.UUID
) -> Allergy:
    """One allergy."""
    allergy: Allergy = await _record(session, Allergy, patient_id, allergy_id)
    await _log(session, actor, "read", ALLERGY, patient_id, [allergy.id])
    return allergy


async def list_allergies(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> Sequence[Allergy]:
    """Every allergy of the patient (all statuses)."""
    await _require_patient(session, patient_id)
    rows = await repo.list_for_patient(
        session, Allergy, patient_id, order_by=Allergy.created_at.desc(), limit=limit, offset=offset
    )
    await _log(session, actor, "search", ALLERGY, patient_id, [None])
    return rows


# ---------------------------------------------------------------- prescriptions


@dataclass
class PrescriptionWithOverrides:
    """A prescription and the allergy overrides it needed."""

    prescription: Prescription
    overrides: list[AllergyOverride] = field(default_factory=list)


async def prescribe(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, data: PrescriptionCreate
) -> PrescriptionWithOverrides:
    """Prescribe; a conflict with an active allergy is refused (409) unless an override reason is given."""
    await _require_patient(session, patient_id)
    await _check_consultation(session, patient_id, data.consultation_id)
    allergies = await repo.active_allergies(session, patient_id)
    conflicts = find_conflicts(
        data.drug_name,
        data.rxnorm_code,
        [AllergyFacts(str(a.id), a.substance, a.code, a.severity, a.reaction) for a in allergies],
    )
    if conflicts and not data.override_reason:
        raise Conflict(
            "The drug conflicts with the patient's active allergies; "
            "send override_reason to prescribe anyway.",
            code="allergy_conflict",
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
    now = datetime.now(UTC)
    prescription = Prescription(
        id=uuid.uuid4(),
        patient_id=patient_id,
        consultation_id=data.consultation_id,
        drug_name=data.drug_name.strip(),
        rxnorm_code=data.rxnorm_code,
        dose_value=data.dose_value,
        dose_unit=data.dose_unit.strip(),
        route=data.route,
        frequency=data.frequency,
        duration_days=data.duration_days,
        instructions=data.instructions,
        status="active",
        prescribed_by=actor.user_id,
        prescribed_at=now,
    )
    await repo.add_all(session, [prescription])
    overrides = [
        AllergyOverride(
            id=uuid.uuid4(),
            prescription_id=prescription.id,
            allergy_id=uuid.UUID(c.allergy_id),
            patient_id=patient_id,
            substance=c.substance,
            match=c.match,
            reason=data.override_reason or "",
            overridden_by=actor.user_id,
            overridden_by_name=actor.username,
            overridden_at=now,
        )
        for c in conflicts
    ]
    if overrides:
        await repo.add_all(session, overrides)
        log.warning(
            "allergy_override",
            prescription_id=str(prescription.id),
            allergies=[c.allergy_id for c in conflicts],
        )
    await _log(session, actor, "create", MEDICATION_REQUEST, patient_id, [prescription.id])
    return PrescriptionWithOverrides(prescription, overrides)


async def update_prescription(
    *,
    session: AsyncSession,
    actor: Actor,
    patient_id: uuid.UUID,
    prescription_id: uuid.UUID,
    data: PrescriptionUpdate,
) -> PrescriptionWithOverrides:
    """Change a prescription's status (completed and cancelled are final)."""
    prescription: Prescription = await _record(session, Prescription, patient_id, prescription_id, lock=True)
    if data.status != prescription.status:
        if data.status not in PRESCRIPTION_TRANSITIONS[prescription.status]:
            raise Conflict(
                f"A {prescription.status} prescription cannot become {data.status}.",
                code="invalid_transition",
            )
        prescription.status = data.status
        await session.flush()
    overrides = (await repo.overrides_for(session, [prescription.id]))[prescription.id]
    await _log(session, actor, "update", MEDICATION_REQUEST, patient_id, [prescription.id])
    return PrescriptionWithOverrides(prescription, overrides)


async def get_prescription(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, prescription_id: uuid.UUID
) -> PrescriptionWithOverrides:
    """One prescription with its overrides."""
    prescription: Prescription = await _record(session, Prescription, patient_id, prescription_id)
    overrides = (await repo.overrides_for(session, [prescription.id]))[prescription.id]
    await _log(session, actor, "read", MEDICATION_REQUEST, patient_id, [prescription.id])
    return PrescriptionWithOverrides(prescription, overrides)


async def list_prescriptions(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> list[PrescriptionWithOverrides]:
    """Every prescription of the patient, newest first (overrides fetched in one query)."""
    await _require_patient(session, patient_id)
    rows = await repo.list_for_patient(
        session,
        Prescription,
        patient_id,
        order_by=Prescription.prescribed_at.desc(),
        limit=limit,
        offset=offset,
    )
    overrides = await repo.overrides_for(session, [r.id for r in rows])
    await _log(session, actor, "search", MEDICATION_REQUEST, patient_id, [None])
    return [PrescriptionWithOverrides(r, overrides[r.id]) for r in rows]


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


async def order_lab(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, data: LabOrderCreate
) -> LabOrder:
    """Order a test by LOINC code (check digit verified)."""
    await _require_patient(session, patient_id)
    if not loinc_is_valid(data.code):
        raise ValidationFailed(
            errors=[field_error("code", f"{data.code!r} is not a LOINC code.", "unknown_code")]
        )
    await _check_consultation(session, patient_id, data.consultation_id)
    order = LabOrder(
        id=uuid.uuid4(),
        patient_id=patient_id,
        consultation_id=data.consultation_id,
        code_system=LOINC,
        code=data.code.strip(),
        display=data.display,
        status="ordered",
        note=data.note,
        ordered_by=actor.user_id,
        ordered_at=datetime.now(UTC),
    )
    await repo.add_all(session, [order])
    await _log(session, actor, "create", LAB_ORDER, patient_id, [order.id])
    return order


async def _transition(
    session: AsyncSession, patient_id: uuid.UUID, order_id: uuid.UUID, allowed_from: set[str], to: str
) -> LabOrder:
    order: LabOrder = await _record(session, LabOrder, patient_id, order_id, lock=True)
    if order.status not in allowed_from:
        raise Conflict(f"A lab order that is {order.status} cannot become {to}.", code="invalid_transition")
    order.status = to
    return order


async def collect_lab(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, order_id: uuid.UUID
) -> LabOrder:
    """The specimen was collected."""
    order = await _transition(session, patient_id, order_id, {"ordered"}, "collected")
    order.collected_at = datetime.now(UTC)
    await session.flush()
    await _log(session, actor, "update", LAB_ORDER, patient_id, [order.id])
    return order


async def result_lab(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, order_id: uuid.UUID, data: LabResultCreate
) -> LabOrder:
    """Record the result; the abnormal flag is computed from the reference range."""
    low, high = data.reference_low, data.reference_high
    if low is not None and high is not None and low > high:
        raise ValidationFailed(errors=[field_error("reference_low", "Above reference_high.", "inconsistent")])
    order = await _transition(session, patient_id, order_id, {"ordered", "collected"}, "resulted")
    now = datetime.now(UTC)
    order.collected_at = order.collected_at or now
    order.resulted_at = now
    order.result_value = data.value
    order.result_unit = data.unit
    order.reference_low, order.reference_high = low, high
    order.abnormal_flag = abnormal_flag(data.value, low, high)
    await session.flush()
    await _log(session, actor, "update", LAB_ORDER, patient_id, [order.id])
    return order


async def cancel_lab(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, order_id: uuid.UUID
) -> LabOrder:
    """Cancel an order that has no result yet."""
    order = await _transition(session, patient_id, order_id, {"ordered", "collected"}, "cancelled")
    await session.flush()
    await _log(session, actor, "update", LAB_ORDER, patient_id, [order.id])
    return order


async def get_lab(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, order_id: uuid.UUID
) -> LabOrder:
    """One lab order."""
    order: LabOrder = await _record(session, LabOrder, patient_id, order_id)
    await _log(session, actor, "read", LAB_ORDER, patient_id, [order.id])
    return order


async def list_labs(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, limit: int = 100, offset: int = 0
) -> Sequence[LabOrder]:
    """The patient's lab orders, newest first."""
    await _require_patient(session, patient_id)
    rows = await repo.list_for_patient(
        session, LabOrder, patient_id, order_by=LabOrder.ordered_at.desc(), limit=limit, offset=offset
    )
    await _log(session, actor, "search", LAB_ORDER, patient_id, [None])
    return rows


async def repoint_patient(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Patient merge hook: move every clinical record to the surviving patient."""
    return await repo.repoint_patient(session, from_id, into_id)
