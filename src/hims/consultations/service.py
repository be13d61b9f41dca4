"""Consultation rules: start, SOAP note, finish, sign, amend. No HTTP, no commit.

Every function writes the PHI access log in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit.service import record_phi_access
from hims.consultations import repository as repo
from hims.consultations.models import Consultation, ConsultationAmendment
from hims.consultations.schemas import AmendmentCreate, ConsultationStart, SoapUpdate
from hims.core import metrics
from hims.core.db import driver_connection
from hims.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed, field_error
from hims.core.security import Actor
from hims.practitioners import service as practitioners
from hims.scheduling import service as scheduling

log = structlog.get_logger("hims.consultations")
RESOURCE = "Consultation"
#: Clock skew tolerated on a client-supplied start time.
_FUTURE_SLACK = timedelta(minutes=5)


async def _appointment_is_startable(
    session: AsyncSession, appointment_id: uuid.UUID, patient_id: uuid.UUID
) -> None:
    await scheduling.check_startable(
        conn=await driver_connection(session), appointment_id=appointment_id, patient_id=patient_id
    )


#: Checks run on ``appointment_id`` before starting: ``async fn(session, appointment_id, patient_id)``
#: raising a HimsError. By default the scheduling domain's (exists, is the patient's, still live).
AppointmentCheck = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[None]]
APPOINTMENT_CHECKS: list[AppointmentCheck] = [_appointment_is_startable]


@dataclass
class ConsultationWithAmendments:
    """A consultation and its amendments (what a full read returns)."""

    consultation: Consultation
    amendments: Sequence[ConsultationAmendment]


async def _require_patient(session: AsyncSession, patient_id: uuid.UUID) -> None:
    if not await repo.patient_is_active(session, patient_id):
        raise NotFound("No such patient.", code="patient_not_found")


async def _log(session: AsyncSession, actor: Actor, action: str, consultation: Consultation) -> None:
    await record_phi_access(
        session=session,
        actor=actor,
        action=action,
        resource_type=RESOURCE,
        accesses=[(consultation.patient_id, str(consultation.id))],
    )


async def start_consultation(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, data: ConsultationStart
) -> Consultation:
    """Open a consultation (walk-in, or from an appointment) and count it in the metric."""
    await _require_patient(session, patient_id)
    now = datetime.now(UTC)
    started_at = data.started_at or now
    if started_at.tzinfo is None:
        raise ValidationFailed(errors=[field_error("started_at", "Give a time zone.", "naive_datetime")])
    if started_at > now + _FUTURE_SLACK:
        raise ValidationFailed(errors=[field_error("started_at", "Cannot be in the future.", "future")])
    if data.practitioner_id and data.practitioner_id not in await practitioners.existing_practitioners(
        conn=await driver_connection(session), ids=[data.practitioner_id]
    ):
        raise ValidationFailed(errors=[field_error("practitioner_id", "No such practitioner.", "not_found")])
    if data.appointment_id:
        # The checks lock the appointment first; only then is "already started" asked, so a
        # concurrent start from the same appointment is seen (READ COMMITTED, fresh snapshot).
        for check in APPOINTMENT_CHECKS:
            await check(session, data.appointment_id, patient_id)
        existing = await repo.started_for_appointment(session, data.appointment_id)
        if existing:
            raise Conflict(
                "A consultation was already started from this appointment.",
                code="appointment_already_started",
                extra={"consultation_id": str(existing)},
            )
    consultation = Consultation(
        id=uuid.uuid4(),
        started_at=started_at.astimezone(UTC),
        patient_id=patient_id,
        practitioner_id=data.practitioner_id or actor.practitioner_id,
        appointment_id=data.appointment_id,
        kind="appointment" if data.appointment_id else "walk_in",
        status="in_progress",
        reason=data.reason,
        started_by=actor.user_id,
    )
    try:
        await repo.add(session, consultation)
    except repo.MissingPartition as exc:
        log.error("consultation_partition_missing", year=str(exc))
        raise ValidationFailed(
            "No partition holds consultations of that year; an operator must run "
            "`hims db partitions ensure --from-year YEAR`.",
            errors=[field_error("started_at", f"Year {exc} is not prepared.", "partition_missing")],
        ) from None
    await _log(session, actor, "create", consultation)
    metrics.CONSULTATION_STARTED.inc()
    log.info("consultation_started", consultation_id=str(consultation.id), kind=consultation.kind)
    return consultation


async def _load(session: AsyncSession, consultation_id: uuid.UUID, *, lock: bool = False) -> Consultation:
    consultation = await repo.get(session, consultation_id, lock=lock)
    if consultation is None:
        raise NotFound("No such consultation.", code="consultation_not_found")
    return consultation


def _check_version(consultation: Consultation, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != consultation.version:
        raise PreconditionFailed(
            "The consultation changed since you read it; reload and retry.", code="version_mismatch"
        )


def _refuse_if_signed(consultation: Consultation) -> None:
    if consultation.status == "signed":
        raise Conflict(
            "A signed consultation cannot change; add an amendment instead.", code="consultation_signed"
        )


async def get_consultation(
    *, session: AsyncSession, actor: Actor, consultation_id: uuid.UUID
) -> ConsultationWithAmendments:
    """One consultation with its note and amendments."""
    consultation = await _load(session, consultation_id)
    amendments = await repo.amendments(session, consultation)
    await _log(session, actor, "read", consultation)
    return ConsultationWithAmendments(consultation, amendments)


async def list_consultations(
    *, session: AsyncSession, actor: Actor, patient_id: uuid.UUID, limit: int = 50, offset: int = 0
) -> Sequence[Consultation]:
    """A patient's consultations, newest first (one log row for the patient)."""
    await _require_patient(session, patient_id)
    rows = await repo.list_for_patient(session, patient_id, limit=limit, offset=offset)
    await record_phi_access(
        session=session, actor=actor, action="search", resource_type=RESOURCE, accesses=[(patient_id, None)]
    )
    return rows


async def update_note(
    *,
    session: AsyncSession,
    actor: Actor,
    consultation_id: uuid.UUID,
    data: SoapUpdate,
    expected_version: int | None = None,
) -> ConsultationWithAmendments:
    """Edit the SOAP note of an unsigned consultation."""
    consultation = await _load(session, consultation_id, lock=True)
    _refuse_if_signed(consultation)
    _check_version(consultation, expected_version)
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(consultation, name, value)
    await session.flush()
    await _log(session, actor, "update", consultation)
    return ConsultationWithAmendments(consultation, [])


async def finish_consultation(
    *, session: AsyncSession, actor: Actor, consultation_id: uuid.UUID, expected_version: int | None = None
) -> ConsultationWithAmendments:
    """Mark the consultation finished (the note can still be edited until it is signed)."""
    consultation = await _load(session, consultation_id, lock=True)
    _refuse_if_signed(consultation)
    _check_version(consultation, expected_version)
    if consultation.status != "finished":
        consultation.status = "finished"
        consultation.finished_at = datetime.now(UTC)
        await session.flush()
    await _log(session, actor, "update", consultation)
    return ConsultationWithAmendments(consultation, [])


async def sign_consultation(
    *, session: AsyncSession, actor: Actor, consultation_id: uuid.UUID, expected_version: int | None = None
) -> ConsultationWithAmendments:
    """Sign: the note becomes immutable (finishing it first if needed)."""
    consultation = await _load(session, consultation_id, lock=True)
    _refuse_if_signed(consultation)
    _check_version(consultation, expected_version)
    now = datetime.now(UTC)
    consultation.status = "signed"
    consultation.finished_at = consultation.finished_at or now
    consultation.signed_at = now
    consultation.signed_by = actor.user_id
    await session.flush()
    await _log(session, actor, "sign", consultation)
    log.info("consultation_signed", consultation_id=str(consultation.id))
    return ConsultationWithAmendments(consultation, [])


async def amend_consultation(
    *, session: AsyncSession, actor: Actor, consultation_id: uuid.UUID, data: AmendmentCreate
) -> ConsultationAmendment:
    """Add a correction to a signed consultation (unsigned ones are edited directly)."""
    consultation = await _load(session, consultation_id)
    if consultation.status != "signed":
        raise Conflict(
            "Only signed consultations take amendments; edit the note instead.",
            code="consultation_not_signed",
        )
    amendment = ConsultationAmendment(
        id=uuid.uuid4(),
        consultation_id=consultation.id,
        consultation_started_at=consultation.started_at,
        patient_id=consultation.patient_id,
        author_user_id=actor.user_id,
        author_name=actor.username,
        created_at=datetime.now(UTC),
        text=data.text,
        reason=data.reason,
    )
    await repo.add_amendment(session, amendment)
    await _log(session, actor, "amend", consultation)
    return amendment


async def last_consultations(
    *, session: AsyncSession, patient_id: uuid.UUID, limit: int = 10
) -> Sequence[Consultation]:
    """The chart's recent consultations (the chart service logs the access as a whole)."""
    return await repo.list_for_patient(session, patient_id, limit=limit)


async def repoint_patient(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Patient merge hook: move consultations and amendments to the surviving patient."""
    return await repo.repoint_patient(session, from_id, into_id)


async def consultation_belongs_to(
    *, session: AsyncSession, consultation_id: uuid.UUID, patient_id: uuid.UUID
) -> bool:
    """For other domains linking records to a consultation: is it this patient's?"""
    return await repo.belongs_to_patient(session, consultation_id, patient_id)


async def patients_without_consultations(*, session: AsyncSession, limit: int) -> Sequence[uuid.UUID]:
    """Ids only (no PHI): patients with no consultation yet, for the demo seeder."""
    return await repo.patients_without_consultations(session, limit=limit)
