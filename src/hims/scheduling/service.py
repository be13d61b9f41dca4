"""Appointment rules: booking without double booking, rescheduling, and the status machine.

Appointments are patient data: every read and write is in the PHI access log.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from hims.audit.service import record_phi_access
from hims.core.db import driver_connection
from hims.core.errors import Conflict, NotFound, ValidationFailed, field_error
from hims.core.etag import check_version
from hims.core.records import Row
from hims.core.security import Actor
from hims.patients.service import require_live_patients
from hims.practitioners.service import require_active_practitioner
from hims.scheduling import repository
from hims.scheduling.models import Appointment
from hims.scheduling.schemas import AppointmentCreate, AppointmentReschedule

RESOURCE = "Appointment"
MAX_DURATION = timedelta(hours=12)
MAX_PAGE = 200
EXCLUSION_VIOLATION = "23P01"

#: action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "reschedule": (frozenset({"booked"}), "booked"),
    "check_in": (frozenset({"booked"}), "checked_in"),
    "complete": (frozenset({"booked", "checked_in"}), "completed"),
    "cancel": (frozenset({"booked", "checked_in"}), "cancelled"),
    "no_show": (frozenset({"booked"}), "no_show"),
}


def _check_times(starts_at: datetime, ends_at: datetime) -> None:
    errors = []
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.tzinfo is None:
            errors.append(field_error(name, "Give a time zone (e.g. Z or +01:00).", "naive_datetime"))
    if not errors:
        if ends_at <= starts_at:
            errors.append(
                field_error("ends_at", "The appointment must end after it starts.", "ends_before_start")
            )
        elif ends_at - starts_at > MAX_DURATION:
            errors.append(field_error("ends_at", "An appointment lasts at most 12 hours.", "too_long"))
    if errors:
        raise ValidationFailed("The appointment has invalid times.", errors=errors)


def _is_double_booking(exc: IntegrityError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == EXCLUSION_VIOLATION


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        if _is_double_booking(exc):
            raise Conflict(
                "The practitioner already has an appointment overlapping this time.", code="double_booking"
            ) from None
        raise
    except StaleDataError:
        raise Conflict(
            "The appointment changed while saving; read it again.", code="version_mismatch"
        ) from None


async def _log(session: AsyncSession, actor: Actor, action: str, appointments: list[Appointment]) -> None:
    await record_phi_access(
        session=session,
        actor=actor,
        action=action,
        resource_type=RESOURCE,
        accesses=[(a.patient_id, str(a.id)) for a in appointments],
    )


async def book_appointment(*, session: AsyncSession, actor: Actor, data: AppointmentCreate) -> Appointment:
    """Book a slot; 409 ``double_booking`` when the practitioner is taken (the database decides)."""
    _check_times(data.starts_at, data.ends_at)
    await require_live_patients(conn=await driver_connection(session), patient_ids=[data.patient_id])
    practitioner = await require_active_practitioner(session=session, practitioner_id=data.practitioner_id)
    appointment = Appointment(
        id=uuid.uuid4(),
        patient_id=data.patient_id,
        practitioner_id=data.practitioner_id,
        facility_id=data.facility_id or practitioner.facility_id,
        department_id=data.department_id or practitioner.department_id,
        starts_at=data.starts_at,
        ends_at=data.ends_at,
        type=data.type,
        reason=data.reason,
        status="booked",
        booked_by=actor.user_id,
    )
    session.add(appointment)
    await _flush(session)
    await session.refresh(appointment)
    await _log(session, actor, "create", [appointment])
    return appointment


async def _load(session: AsyncSession, appointment_id: uuid.UUID, *, for_update: bool = False) -> Appointment:
    appointment = await repository.get(session, appointment_id, for_update=for_update)
    if appointment is None:
        raise NotFound("No appointment with this id.", code="appointment_not_found")
    return appointment


async def get_appointment(*, session: AsyncSession, actor: Actor, appointment_id: uuid.UUID) -> Appointment:
    """One appointment (logged as ``read``)."""
    appointment = await _load(session, appointment_id)
    await _log(session, actor, "read", [appointment])
    return appointment


async def _transition(
    session: AsyncSession, actor: Actor, appointment_id: uuid.UUID, action: str, expected_version: int | None
) -> Appointment:
    appointment = await _load(session, appointment_id, for_update=True)
    check_version(appointment.version, expected_version)
    allowed_from, target = TRANSITIONS[action]
    if appointment.status not in allowed_from:
        raise Conflict(
            f"Cannot {action.replace('_', ' ')} an appointment that is "
            f"{appointment.status.replace('_', ' ')}.",
            code="invalid_transition",
            extra={"status": appointment.status, "action": action},
        )
    appointment.status = target
    return appointment


async def reschedule_appointment(
    *,
    session: AsyncSession,
    actor: Actor,
    appointment_id: uuid.UUID,
    data: AppointmentReschedule,
    expected_version: int | None = None,
) -> Appointment:
    """Move a booked appointment (and optionally to another practitioner); no double booking."""
    _check_times(data.starts_at, data.ends_at)
    appointment = await _transition(session, actor, appointment_id, "reschedule", expected_version)
    if data.practitioner_id is not None and data.practitioner_id != appointment.practitioner_id:
        await require_active_practitioner(session=session, practitioner_id=data.practitioner_id)
        appointment.practitioner_id = data.practitioner_id
    appointment.starts_at, appointment.ends_at = data.starts_at, data.ends_at
    await _flush(session)
    await session.refresh(appointment)
    await _log(session, actor, "reschedule", [appointment])
    return appointment


async def cancel_appointment(
    *,
    session: AsyncSession,
    actor: Actor,
    appointment_id: uuid.UUID,
    reason: str,
    expected_version: int | None = None,
) -> Appointment:
    """Cancel with a reason; the slot becomes free."""
    appointment = await _transition(session, actor, appointment_id, "cancel", expected_version)
    appointment.cancel_reason = reason
    appointment.cancelled_at = datetime.now(UTC)
    await _flush(session)
    await session.refresh(appointment)
    await _log(session, actor, "cancel", [appointment])
    return appointment


async def check_in_appointment(
    *, session: AsyncSession, actor: Actor, appointment_id: uuid.UUID, expected_version: int | None = None
) -> Appointment:
    """The patient arrived."""
    appointment = await _transition(session, actor, appointment_id, "check_in", expected_version)
    appointment.checked_in_at = datetime.now(UTC)
    await _flush(session)
    await session.refresh(appointment)
    await _log(session, actor, "check_in", [appointment])
    return appointment


async def mark_no_show(
    *, session: AsyncSession, actor: Actor, appointment_id: uuid.UUID, expected_version: int | None = None
) -> Appointment:
    """The patient did not come; the slot is released."""
    appointment = await _transition(session, actor, appointment_id, "no_show", expected_version)
    await _flush(session)
    await session.refresh(appointment)
    await _log(session, actor, "no_show", [appointment])
    return appointment


async def complete_appointment(
    *, session: AsyncSession, actor: Actor, appointment_id: uuid.UUID, expected_version: int | None = None
) -> Appointment:
    """The visit took place."""
    appointment = await _transition(session, actor, appointment_id, "complete", expected_version)
    appointment.completed_at = datetime.now(UTC)
    await _flush(session)
    await session.refresh(appointment)
    await _log(session, actor, "complete", [appointment])
    return appointment


def _cursor(value: tuple[datetime, uuid.UUID]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([value[0].isoformat(), str(value[1])])).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw: Any = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(raw[0]), uuid.UUID(raw[1])
    except (binascii.Error, ValueError, TypeError, IndexError, orjson.JSONDecodeError):
        raise ValidationFailed(
            errors=[field_error("cursor", "Not a cursor this API returned.", "invalid_cursor")]
        ) from None


async def list_appointments(
    *,
    session: AsyncSession,
    actor: Actor,
    day: date | None = None,
    tz: str = "UTC",
    starts_from: datetime | None = None,
    starts_before: datetime | None = None,
    practitioner_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
    statuses: list[str] | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Appointment], str | None]:
    """Appointments by day (in ``tz``), practitioner, patient or status; one PHI row per appointment."""
    if day is not None:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationFailed(
                errors=[field_error("tz", "Not an IANA time zone.", "invalid_timezone")]
            ) from None
        starts_from = datetime.combine(day, time.min, tzinfo=zone)
        starts_before = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    for name, value in (("from", starts_from), ("to", starts_before)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(errors=[field_error(name, "Give a time zone (e.g. Z).", "naive_datetime")])
    limit = max(1, min(limit, MAX_PAGE))
    rows = await repository.list_appointments(
        session,
        starts_from=starts_from,
        starts_before=starts_before,
        practitioner_id=practitioner_id,
        patient_id=patient_id,
        statuses=statuses,
        after=_parse_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    next_cursor = _cursor((page[-1].starts_at, page[-1].id)) if len(rows) > limit else None
    await _log(session, actor, "search", page)
    return page, next_cursor


#: Appointments a consultation may be started from.
STARTABLE_STATUSES = frozenset({"booked", "checked_in"})


async def upcoming_for_chart(
    *, conn: asyncpg.Connection, patient_id: uuid.UUID, limit: int = 10
) -> list[Row]:
    """The patient's next live appointments, in one query; the chart logs the access as a whole."""
    rows = await conn.fetch(
        "SELECT * FROM appointments WHERE patient_id = $1 AND starts_at >= now() "
        "AND status = ANY($2::text[]) "
        "ORDER BY starts_at, id LIMIT $3",
        patient_id,
        sorted(STARTABLE_STATUSES),
        limit,
    )
    return [dict(r) for r in rows]


async def check_startable(
    *, conn: asyncpg.Connection, appointment_id: uuid.UUID, patient_id: uuid.UUID
) -> None:
    """For the consultations domain: the appointment exists, is this patient's and is still live.

    Locks the appointment row until the caller's transaction ends, so two consultations started
    from one appointment at the same moment are serialised (the second then sees the first).
    """
    appointment = await conn.fetchrow(
        "SELECT patient_id, status FROM appointments WHERE id = $1 FOR UPDATE", appointment_id
    )
    if appointment is None or appointment["patient_id"] != patient_id:
        raise ValidationFailed(
            errors=[field_error("appointment_id", "No such appointment for this patient.", "not_found")]
        )
    if appointment["status"] not in STARTABLE_STATUSES:
        raise Conflict(
            f"A {appointment['status']} appointment cannot start a consultation.",
            code="appointment_not_startable",
        )
