"""Appointment rules: booking without double booking, rescheduling, and the status machine.

The one home of every appointment rule, whichever way an appointment arrives (REST, FHIR, a
bundle, an import, the seeder): times (an appointment ends after it starts, lasts at most 12
hours), a live patient, an active practitioner, places that exist, no double booking (the
database decides: 409 ``double_booking``) and the status transitions. Appointments are patient
data: every read and write is in the PHI access log, in the statement that reads or writes.
Works on a driver connection; no HTTP, no commit.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson

from hims.audit.service import log_part
from hims.core import records
from hims.core.errors import Conflict, HimsError, NotFound, PreconditionFailed, ValidationFailed, field_error
from hims.core.etag import check_version
from hims.core.records import Part, Row
from hims.core.security import Actor
from hims.patients.service import require_live_patients
from hims.practitioners import service as practitioners
from hims.scheduling import repository
from hims.scheduling.models import RELEASED_STATUSES
from hims.scheduling.schemas import (
    AppointmentCreate,
    AppointmentReschedule,
    AppointmentStatus,
    AppointmentType,
)

RESOURCE = "Appointment"
MAX_DURATION = timedelta(hours=12)
MAX_PAGE = 200
STATUSES: tuple[str, ...] = get_args(AppointmentStatus)
TYPES: tuple[str, ...] = get_args(AppointmentType)
REQUIRED = ("patient_id", "practitioner_id", "starts_at", "ends_at")
#: Columns the service manages itself; a change never sets them directly.
MANAGED = frozenset({"id", "version", "created_at", "updated_at", "deleted_at", "extra"})
#: Columns a change that leaves them out keeps (who booked, when the status changed).
KEPT_WHEN_ABSENT = ("booked_by", "checked_in_at", "cancelled_at", "completed_at")

#: action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "reschedule": (frozenset({"booked"}), "booked"),
    "check_in": (frozenset({"booked"}), "checked_in"),
    "complete": (frozenset({"booked", "checked_in"}), "completed"),
    "cancel": (frozenset({"booked", "checked_in"}), "cancelled"),
    "no_show": (frozenset({"booked"}), "no_show"),
}
#: The action that leads into each status (a change of status is that action).
INTO = {target: action for action, (_, target) in TRANSITIONS.items()}
#: The time an appointment entering a status records, when it has none yet.
STAMPS = {"checked_in": "checked_in_at", "completed": "completed_at", "cancelled": "cancelled_at"}
#: Appointments a consultation may be started from.
STARTABLE_STATUSES = frozenset({"booked", "checked_in"})


@dataclass
class New:
    """An appointment to book: its column values and, for the FHIR API, the id, version and extra
    elements of the resource it comes from."""

    values: Row
    id: uuid.UUID | None = None
    version: int = 1
    extra: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# the rules of an appointment row

_LENGTHS = {
    c.name: int(c.type.length)  # type: ignore[attr-defined]
    for c in repository.TABLE.c
    if isinstance(getattr(c.type, "length", None), int)
}


def time_errors(starts_at: Any, ends_at: Any) -> list[dict[str, Any]]:
    """The rules of an appointment's times: zoned, ending after they start, at most 12 hours."""
    errors = []
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if isinstance(value, datetime) and value.tzinfo is None:
            errors.append(field_error(name, "Give a time zone (e.g. Z or +01:00).", "naive_datetime"))
    if errors or not isinstance(starts_at, datetime) or not isinstance(ends_at, datetime):
        return errors
    if ends_at <= starts_at:
        errors.append(
            field_error("ends_at", "The appointment must end after it starts.", "ends_before_start")
        )
    elif ends_at - starts_at > MAX_DURATION:
        errors.append(field_error("ends_at", "An appointment lasts at most 12 hours.", "too_long"))
    return errors


def appointment_errors(row: Row) -> list[dict[str, Any]]:
    """Every rule an appointment row must satisfy on its own, as field errors (empty: valid)."""
    errors = [field_error(n, "This field is required.", "required") for n in REQUIRED if row.get(n) is None]
    errors += time_errors(row.get("starts_at"), row.get("ends_at"))
    if row.get("type") not in TYPES:
        errors.append(field_error("type", f"One of {', '.join(TYPES)}.", "invalid"))
    if row.get("status") not in STATUSES:
        errors.append(field_error("status", f"One of {', '.join(STATUSES)}.", "invalid"))
    for name, limit in _LENGTHS.items():
        value = row.get(name)
        if isinstance(value, str) and len(value) > limit:
            errors.append(field_error(name, f"At most {limit} characters.", "too_long"))
    return errors


def _in_utc(row: Row) -> Row:
    """``row`` with its times in UTC, as the database gives them back (zoned times only: a naive
    one is refused by the rules)."""
    for column in ("starts_at", "ends_at", *STAMPS.values()):
        value = row.get(column)
        if isinstance(value, datetime) and value.tzinfo is not None:
            row[column] = value.astimezone(UTC)
    return row


def _naming(error: HimsError, rows: int, row_id: uuid.UUID) -> HimsError:
    """``error`` saying which record of a batch it is about (``id``; the FHIR API names the entry)."""
    if rows > 1:
        error.extra.setdefault("id", str(row_id))
    return error


def _raise_if(errors: list[dict[str, Any]], rows: int, row_id: uuid.UUID) -> None:
    if errors:
        raise _naming(ValidationFailed("The appointment has invalid fields.", errors=errors), rows, row_id)


def _refuse_unless(status: str, action: str) -> None:
    """409 ``invalid_transition`` unless ``action`` may start from ``status``."""
    if status not in TRANSITIONS[action][0]:
        raise Conflict(
            f"Cannot {action.replace('_', ' ')} an appointment that is {status.replace('_', ' ')}.",
            code="invalid_transition",
            extra={"status": status, "action": action},
        )


def _stamp(row: Row, now: datetime) -> None:
    """Record when the appointment entered its status, unless that is known already."""
    column = STAMPS.get(row["status"])
    if column is not None and row[column] is None:
        row[column] = now


async def _references(conn: asyncpg.Connection, rows: Sequence[Row], *, places: bool = True) -> None:
    """Live patients (422 ``unknown_patient``/``patient_merged``), active practitioners (422
    ``unknown_practitioner``) and, with ``places``, facilities and departments that exist."""
    await require_live_patients(conn=conn, patient_ids=[r["patient_id"] for r in rows])
    await practitioners.require_active_practitioners(
        conn=conn, practitioner_ids=[r["practitioner_id"] for r in rows]
    )
    if places:
        await practitioners.require_places(
            conn=conn,
            facility_ids=[r["facility_id"] for r in rows if r["facility_id"] is not None],
            department_ids=[r["department_id"] for r in rows if r["department_id"] is not None],
        )


async def _check_references(conn: asyncpg.Connection, rows: Sequence[Row]) -> None:
    """`_references`, naming the appointment at fault when there are several."""
    try:
        await _references(conn, rows)
    except HimsError:
        if len(rows) == 1:
            raise
        for row in rows:  # which one (a refused batch only: worth the extra lookups)
            try:
                await _references(conn, [row])
            except HimsError as error:
                raise _naming(error, len(rows), row["id"]) from None
        raise


def _log(actor: Actor, action: str) -> Part:
    return log_part(actor, action, RESOURCE)


# ---------------------------------------------------------------------------------------------
# book, change, delete: every channel


async def book(*, conn: asyncpg.Connection, actor: Actor, news: Sequence[New]) -> list[Row]:
    """Book appointments (all or none; REST, FHIR, imports and the seeder come here). 409
    ``double_booking`` when one overlaps a live appointment of the practitioner."""
    now = datetime.now(UTC)
    rows = []
    for new in news:
        row: Row = dict.fromkeys(repository.COLUMNS)
        row.update({k: v for k, v in new.values.items() if k not in MANAGED and k in row})
        row["type"] = row["type"] or "in_person"
        row["status"] = row["status"] or "booked"
        row["booked_by"] = row["booked_by"] or actor.user_id
        row.update(
            id=new.id or uuid.uuid4(), version=new.version, created_at=now, updated_at=now, extra=new.extra
        )
        _raise_if(appointment_errors(row), len(news), row["id"])
        rows.append(_in_utc(row))
    await _check_references(conn, rows)
    await repository.insert(conn, actor, rows, [_log(actor, "create")])
    return rows


async def revise(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """The next version of an appointment (FHIR update); None when another write changed it since
    ``prior`` was read.

    A change of status is the REST action leading into it (check in, complete, cancel, no-show,
    back to booked = reschedule) and follows the same transitions (409 ``invalid_transition``);
    new times or another practitioner are a reschedule (booked appointments only). A new patient
    must be live, a new practitioner active. A deleted appointment comes back as if booked anew.
    """
    now = datetime.now(UTC)
    row = {**prior, **{k: v for k, v in changes.items() if k not in MANAGED and k in prior}}
    for column in KEPT_WHEN_ABSENT:
        row[column] = row[column] or prior[column]
    _raise_if(appointment_errors(row), 1, row["id"])
    _in_utc(row)
    if prior["deleted_at"] is not None:
        await _references(conn, [row])
    else:
        if row["status"] != prior["status"]:
            _refuse_unless(prior["status"], INTO[row["status"]])
            _stamp(row, now)
        if any(row[c] != prior[c] for c in ("starts_at", "ends_at", "practitioner_id")):
            _refuse_unless(prior["status"], "reschedule")
        if row["patient_id"] != prior["patient_id"]:
            await require_live_patients(conn=conn, patient_ids=[row["patient_id"]])
        if row["practitioner_id"] != prior["practitioner_id"]:
            await practitioners.require_active_practitioner(conn=conn, practitioner_id=row["practitioner_id"])
        moved = [
            (c, row[c]) for c in ("facility_id", "department_id") if row[c] is not None and row[c] != prior[c]
        ]
        if moved:
            await practitioners.require_places(
                conn=conn,
                facility_ids=[v for c, v in moved if c == "facility_id"],
                department_ids=[v for c, v in moved if c == "department_id"],
            )
    row.update(
        version=prior["version"] + 1,
        updated_at=now,
        deleted_at=None,
        extra=extra if extra is not None or not keep_extra else prior["extra"],
    )
    written = await repository.update(conn, actor, [row], [_log(actor, "update")])
    return row if written else None


async def remove(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Delete (FHIR): the appointment is cancelled and kept, marked deleted; one that no longer holds
    the slot (cancelled, no-show) is only marked. A completed one cannot be cancelled (409
    ``invalid_transition``). None when another write changed it since ``prior`` was read."""
    now = datetime.now(UTC)
    row = {**prior, "deleted_at": now, "version": prior["version"] + 1, "updated_at": now}
    if prior["status"] not in RELEASED_STATUSES:
        _refuse_unless(prior["status"], "cancel")
        row["status"] = "cancelled"
        _stamp(row, now)
    written = await repository.update(conn, actor, [row], [_log(actor, "delete")], deleting=True)
    return row if written else None


async def load(
    conn: asyncpg.Connection, appointment_ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Current rows of these appointments (any state), for a caller about to change them."""
    return await repository.get_many(conn, appointment_ids, lock=lock)


# ---------------------------------------------------------------------------------------------
# the REST API's actions


async def book_appointment(*, conn: asyncpg.Connection, actor: Actor, data: AppointmentCreate) -> Row:
    """Book a slot sent to the REST API; the facility and department default to the practitioner's."""
    values = data.model_dump()
    if values["facility_id"] is None or values["department_id"] is None:
        found = await practitioners.load(conn, "practitioners", [data.practitioner_id])
        practitioner = found.get(data.practitioner_id)
        if practitioner is not None:
            values["facility_id"] = values["facility_id"] or practitioner["facility_id"]
            values["department_id"] = values["department_id"] or practitioner["department_id"]
    (row,) = await book(conn=conn, actor=actor, news=[New({**values, "status": "booked"})])
    return row


def _found(row: Row | None) -> Row:
    if row is None:
        raise NotFound("No appointment with this id.", code="appointment_not_found")
    return row


async def get_appointment(*, conn: asyncpg.Connection, actor: Actor, appointment_id: uuid.UUID) -> Row:
    """One appointment (a deleted one reads as cancelled), logged as ``read`` in the statement that
    reads it."""
    logged = log_part(
        actor,
        "read",
        RESOURCE,
        source="found",
        patient_id="found.patient_id",
        resource_id="found.id::text",
    )
    return _found(await repository.get_logged(conn, appointment_id, logged))


async def _transition(
    conn: asyncpg.Connection,
    actor: Actor,
    appointment_id: uuid.UUID,
    action: str,
    expected_version: int | None,
    changes: Row | None = None,
) -> Row:
    """Apply a REST action under the row lock (concurrent actions queue; the second sees the first)."""
    async with records.atomic(conn):
        prior = _found(await repository.get(conn, appointment_id, lock=True))
        check_version(prior["version"], expected_version)
        _refuse_unless(prior["status"], action)
        now = datetime.now(UTC)
        row = {**prior, **(changes or {}), "status": TRANSITIONS[action][1]}
        _stamp(row, now)
        _raise_if(appointment_errors(row), 1, row["id"])
        _in_utc(row)
        if row["practitioner_id"] != prior["practitioner_id"]:
            await practitioners.require_active_practitioner(conn=conn, practitioner_id=row["practitioner_id"])
        row.update(version=prior["version"] + 1, updated_at=now)
        if not await repository.update(conn, actor, [row], [_log(actor, action)]):
            raise PreconditionFailed(
                "The record changed while saving; read it again.", code="version_mismatch"
            )
        return row


async def reschedule_appointment(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    appointment_id: uuid.UUID,
    data: AppointmentReschedule,
    expected_version: int | None = None,
) -> Row:
    """Move a booked appointment (and optionally to another practitioner); no double booking."""
    _raise_if(time_errors(data.starts_at, data.ends_at), 1, appointment_id)
    changes: Row = {"starts_at": data.starts_at, "ends_at": data.ends_at}
    if data.practitioner_id is not None:
        changes["practitioner_id"] = data.practitioner_id
    return await _transition(conn, actor, appointment_id, "reschedule", expected_version, changes)


async def cancel_appointment(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    appointment_id: uuid.UUID,
    reason: str,
    expected_version: int | None = None,
) -> Row:
    """Cancel with a reason; the slot becomes free."""
    return await _transition(
        conn, actor, appointment_id, "cancel", expected_version, {"cancel_reason": reason}
    )


async def check_in_appointment(
    *, conn: asyncpg.Connection, actor: Actor, appointment_id: uuid.UUID, expected_version: int | None = None
) -> Row:
    """The patient arrived."""
    return await _transition(conn, actor, appointment_id, "check_in", expected_version)


async def mark_no_show(
    *, conn: asyncpg.Connection, actor: Actor, appointment_id: uuid.UUID, expected_version: int | None = None
) -> Row:
    """The patient did not come; the slot is released."""
    return await _transition(conn, actor, appointment_id, "no_show", expected_version)


async def complete_appointment(
    *, conn: asyncpg.Connection, actor: Actor, appointment_id: uuid.UUID, expected_version: int | None = None
) -> Row:
    """The visit took place."""
    return await _transition(conn, actor, appointment_id, "complete", expected_version)


# ---------------------------------------------------------------------------------------------
# lists


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
    conn: asyncpg.Connection,
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
) -> tuple[list[Row], str | None]:
    """Appointments by day (in ``tz``), practitioner, patient or status; one PHI row per appointment
    shown, written by the statement that reads them."""
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
    logged = log_part(
        actor,
        "search",
        RESOURCE,
        source=f"found WHERE n <= {limit}",
        patient_id="found.patient_id",
        resource_id="found.id::text",
    )
    rows = await repository.list_appointments(
        conn,
        starts_from=starts_from,
        starts_before=starts_before,
        practitioner_id=practitioner_id,
        patient_id=patient_id,
        statuses=statuses,
        after=_parse_cursor(cursor) if cursor else None,
        limit=limit + 1,
        log=logged,
    )
    page = rows[:limit]
    next_cursor = _cursor((page[-1]["starts_at"], page[-1]["id"])) if len(rows) > limit else None
    return page, next_cursor


# ---------------------------------------------------------------------------------------------
# for other domains


async def upcoming_for_chart(
    *, conn: asyncpg.Connection, patient_id: uuid.UUID, limit: int = 10
) -> list[Row]:
    """The patient's next live appointments, in one query; the chart logs the access as a whole."""
    return await repository.list_appointments(
        conn,
        starts_from=datetime.now(UTC),
        starts_before=None,
        practitioner_id=None,
        patient_id=patient_id,
        statuses=sorted(STARTABLE_STATUSES),
        after=None,
        limit=limit,
    )


async def check_startable(
    *, conn: asyncpg.Connection, appointment_id: uuid.UUID, patient_id: uuid.UUID
) -> None:
    """For the consultations domain: the appointment exists, is this patient's and is still live.

    Locks the appointment row until the caller's transaction ends, so two consultations started
    from one appointment at the same moment are serialised (the second then sees the first).
    """
    appointment = await repository.get(conn, appointment_id, lock=True)
    if appointment is None or appointment["patient_id"] != patient_id:
        raise ValidationFailed(
            errors=[field_error("appointment_id", "No such appointment for this patient.", "not_found")]
        )
    if appointment["status"] not in STARTABLE_STATUSES:
        raise Conflict(
            f"A {appointment['status']} appointment cannot start a consultation.",
            code="appointment_not_startable",
        )


async def move_patient_records(
    conn: asyncpg.Connection, actor: Actor, from_id: uuid.UUID, into_id: uuid.UUID
) -> int:
    """Patient merge: every appointment of ``from_id`` becomes ``into_id``'s, as a new version of
    each (logged as ``merge``, rendered anew); runs in the merge's transaction. Returns how many."""
    prior = await repository.of_patient(conn, from_id, lock=True)
    if not prior:
        return 0
    now = datetime.now(UTC)
    rows = [{**r, "patient_id": into_id, "version": r["version"] + 1, "updated_at": now} for r in prior]
    await repository.update(
        conn, actor, rows, [_log(actor, "merge")], columns=("patient_id", "version", "updated_at")
    )
    return len(rows)
