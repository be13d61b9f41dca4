"""Consultation rules: open, SOAP note, finish, sign, amend, delete — for every channel.

A consultation is opened from REST (`start_consultation`), FHIR (an ambulatory Encounter), a
bundle or an import, and always by `open_consultations`; it changes only through
`revise_consultation` (REST note/finish/sign, FHIR update) and is removed only by
`remove_consultation`. Signed is final. Works on a driver connection; each write is one
statement with its PHI log rows and the Encounter rendering. No HTTP, no commit.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from hims.audit.service import log_part, record
from hims.consultations import partitions
from hims.consultations import repository as repo
from hims.consultations.schemas import AmendmentCreate, ConsultationStart, SoapUpdate
from hims.core import metrics, records
from hims.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed, field_error
from hims.core.records import Row
from hims.core.security import Actor
from hims.patients import service as patients
from hims.practitioners import service as practitioners
from hims.scheduling import service as scheduling

log = structlog.get_logger("hims.consultations")
RESOURCE = "Encounter"
AMENDMENT = "ConsultationAmendment"
#: Lifecycle: in_progress → finished → signed (signed is final; corrections are amendments).
STATUSES = ("in_progress", "finished", "signed")
KINDS = ("walk_in", "appointment")
#: Clock skew tolerated on a client-supplied start time.
_FUTURE_SLACK = timedelta(minutes=5)
#: Channels through which a person starts a consultation (the started metric counts these; the
#: seeder and imports of past visits are not consultations being started).
STARTING_CHANNELS = frozenset({"rest", "fhir", "bundle", "ui"})
#: Columns FHIR and the clinical rules see; the SOAP note is not among them (REST edits it).
MODELLED = (
    "patient_id",
    "practitioner_id",
    "appointment_id",
    "kind",
    "status",
    "reason",
    "started_at",
    "finished_at",
    "signed_at",
    "started_by",
    "signed_by",
)
NOTE = ("reason", "subjective", "objective", "assessment", "plan")


@dataclass
class ConsultationWithAmendments:
    """A consultation and its amendments (what a full read returns)."""

    consultation: Row
    amendments: Sequence[Row]


@dataclass
class Opening:
    """One consultation to open: its column values, and for the FHIR API its id, version and the
    Encounter elements the row does not hold."""

    values: Row
    id: uuid.UUID | None = None
    version: int = 1
    extra: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _errors(row: Row, now: datetime) -> list[dict[str, Any]]:
    errors = []
    started = row.get("started_at")
    if started is None:
        errors.append(field_error("started_at", "A consultation has a start time.", "required"))
    elif started.tzinfo is None:
        errors.append(field_error("started_at", "Give a time zone.", "naive_datetime"))
    elif started > now + _FUTURE_SLACK:
        errors.append(field_error("started_at", "Cannot be in the future.", "future"))
    if row.get("patient_id") is None:
        errors.append(field_error("patient_id", "A consultation is a patient's.", "required"))
    if row.get("status") not in STATUSES:
        errors.append(field_error("status", f"One of {', '.join(STATUSES)}.", "invalid"))
    if row.get("kind") not in KINDS:
        errors.append(field_error("kind", f"One of {', '.join(KINDS)}.", "invalid"))
    finished = row.get("finished_at")
    if (
        finished is not None
        and started is not None
        and finished.tzinfo
        and started.tzinfo
        and finished < started
    ):
        errors.append(field_error("finished_at", "Before the start.", "before_start"))
    if row.get("reason") and len(row["reason"]) > 2000:
        errors.append(field_error("reason", "At most 2000 characters.", "too_long"))
    return errors


async def _check_references(conn: asyncpg.Connection, rows: Sequence[Row]) -> None:
    """Patients live, practitioners registered, appointments startable and not started yet."""
    await patients.require_live_patients(conn=conn, patient_ids=[r["patient_id"] for r in rows])
    wanted = {r["practitioner_id"] for r in rows if r.get("practitioner_id")}
    if wanted:
        found = await practitioners.existing_practitioners(conn=conn, ids=list(wanted))
        if wanted - found:
            raise ValidationFailed(
                errors=[field_error("practitioner_id", "No such practitioner.", "not_found")]
            )
    with_appointment = [r for r in rows if r.get("appointment_id")]
    for row in with_appointment:
        # Locks the appointment first; only then is "already started" asked, so a concurrent
        # start from the same appointment is seen (READ COMMITTED, fresh snapshot).
        await scheduling.check_startable(
            conn=conn, appointment_id=row["appointment_id"], patient_id=row["patient_id"]
        )
    started = await repo.started_for_appointments(conn, [r["appointment_id"] for r in with_appointment])
    for row in with_appointment:
        if row["appointment_id"] in started and started[row["appointment_id"]] != row["id"]:
            raise Conflict(
                "A consultation was already started from this appointment.",
                code="appointment_already_started",
                extra={"consultation_id": str(started[row["appointment_id"]])},
            )


def _missing_partition(year: int | str) -> ValidationFailed:
    log.error("consultation_partition_missing", year=str(year))
    return ValidationFailed(
        "No partition holds consultations of that year; an operator must run "
        "`hims db partitions ensure --from-year YEAR`.",
        errors=[field_error("started_at", f"Year {year} is not prepared.", "partition_missing")],
    )


async def open_consultations(
    *, conn: asyncpg.Connection, actor: Actor, openings: Sequence[Opening]
) -> list[Row]:
    """Open consultations (all or none): every rule checked, one statement writes them."""
    now = datetime.now(UTC)
    rows: list[Row] = []
    for opening in openings:
        row = dict.fromkeys(repo.COLUMNS) | {k: v for k, v in opening.values.items() if k in repo.COLUMNS}
        row.update(id=opening.id or uuid.uuid4(), version=opening.version, extra=opening.extra)
        row["kind"] = row["kind"] or ("appointment" if row["appointment_id"] else "walk_in")
        row["status"] = row["status"] or "in_progress"
        if row["started_at"] is not None and row["started_at"].tzinfo is not None:
            row["started_at"] = row["started_at"].astimezone(UTC)
        if row["status"] == "signed":
            row["finished_at"] = row["finished_at"] or row["signed_at"] or now
            row["signed_at"] = row["signed_at"] or now
        row["created_at"] = row["updated_at"] = now
        errors = _errors(row, now)
        if errors:
            raise ValidationFailed("The consultation has invalid fields.", errors=errors)
        rows.append(row)
    # Starting from an appointment locks it until the insert commits (one start per appointment);
    # a walk-in's checks only read, and its insert is one statement, so it needs no transaction.
    locking = any(r["appointment_id"] for r in rows)
    async with records.atomic(conn) if locking else contextlib.nullcontext():
        await _check_references(conn, rows)
        try:
            await repo.insert(conn, actor, rows, [log_part(actor, "create", RESOURCE)])
        except repo.MissingPartition as exc:
            raise _missing_partition(str(exc)) from None
    if actor.channel in STARTING_CHANNELS:  # an import of past visits starts none
        metrics.CONSULTATION_STARTED.inc(len(rows))
        for row in rows:
            log.info("consultation_started", consultation_id=str(row["id"]), kind=row["kind"])
    return rows


async def start_consultation(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, data: ConsultationStart
) -> Row:
    """Open a consultation through the REST API (walk-in, or from an appointment)."""
    await patients.require_patient_record(conn=conn, patient_id=patient_id)
    values = {
        "patient_id": patient_id,
        "practitioner_id": data.practitioner_id or actor.practitioner_id,
        "appointment_id": data.appointment_id,
        "status": "in_progress",
        "reason": data.reason,
        "started_at": data.started_at or datetime.now(UTC),
        "started_by": actor.user_id,
    }
    (row,) = await open_consultations(conn=conn, actor=actor, openings=[Opening(values)])
    return row


# ---------------------------------------------------------------------------------------------
# read


async def _load(conn: asyncpg.Connection, consultation_id: uuid.UUID, *, lock: bool = False) -> Row:
    found = (await repo.get_many(conn, [consultation_id], lock=lock)).get(consultation_id)
    if found is None:
        raise NotFound("No such consultation.", code="consultation_not_found")
    return found


async def load(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Current rows of these consultations, for a caller about to change them."""
    return await repo.get_many(conn, ids, lock=lock)


def row_subquery(number: int) -> str:
    """SQL reading one consultation by the id in parameter ``$number`` as a composite value, for a
    caller that reads it along with its own row (the FHIR store reading an Encounter to write it)."""
    return repo.row_subquery(number)


async def get_consultation(
    *, conn: asyncpg.Connection, actor: Actor, consultation_id: uuid.UUID
) -> ConsultationWithAmendments:
    """One consultation with its note and amendments (read and logged in one statement)."""
    logged = log_part(
        actor, "read", RESOURCE, source="found", patient_id="found.patient_id", resource_id="found.id::text"
    )
    found = await repo.get_logged(conn, consultation_id, logged)
    if found is None:
        raise NotFound("No such consultation.", code="consultation_not_found")
    return ConsultationWithAmendments(found, await repo.amendments(conn, found))


async def list_consultations(
    *, conn: asyncpg.Connection, actor: Actor, patient_id: uuid.UUID, limit: int = 50, offset: int = 0
) -> list[Row]:
    """A patient's consultations, newest first (one log row per consultation listed)."""
    await patients.require_patient_record(conn=conn, patient_id=patient_id)
    rows = await repo.list_for_patient(conn, patient_id, limit=limit, offset=offset)
    await record(
        conn,
        actor=actor,
        action="search",
        resource_type=RESOURCE,
        accesses=[(patient_id, str(r["id"])) for r in rows] or [(patient_id, None)],
    )
    return rows


async def last_consultations(
    *, conn: asyncpg.Connection, patient_id: uuid.UUID, limit: int = 10
) -> list[Row]:
    """The chart's recent consultations (the chart service logs the access as a whole)."""
    return await repo.list_for_patient(conn, patient_id, limit=limit)


async def consultation_owners(
    *, conn: asyncpg.Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """For other domains linking records to consultations: consultation id → its patient."""
    return await repo.owners(conn, ids)


async def patients_without_consultations(
    *, conn: asyncpg.Connection, patient_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """Ids only (no PHI): which of these patients have no consultation yet (the demo seeder)."""
    return await repo.patients_without_consultations(conn, patient_ids)


# ---------------------------------------------------------------------------------------------
# change


def _signed_error(message: str) -> Conflict:
    return Conflict(message, code="consultation_signed")


async def revise_consultation(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """The next version of ``prior`` with ``changes`` (REST note/finish/sign, FHIR update).

    A signed consultation is final: a change of any column is 409 ``consultation_signed`` (a FHIR
    update that only adds elements the row does not hold is accepted). The start (the partition
    key) and the patient never change; a finished consultation is not reopened. Returns None when
    another write changed it since ``prior`` was read.
    """
    row = {**prior, **{k: v for k, v in changes.items() if k in MODELLED or k in NOTE}}
    if row["started_at"] is not None and row["started_at"].tzinfo is not None:
        row["started_at"] = row["started_at"].astimezone(UTC)
    changed = [k for k in (*MODELLED, *NOTE) if row.get(k) != prior.get(k)]
    if prior["status"] == "signed" and changed:
        raise _signed_error("A signed consultation cannot change; add an amendment instead.")
    errors = []
    if "started_at" in changed:
        errors.append(field_error("started_at", "The start of a consultation cannot change.", "immutable"))
    if "patient_id" in changed:
        errors.append(
            field_error("patient_id", "A consultation stays with its patient (merge moves it).", "immutable")
        )
    if prior["status"] != "in_progress" and row["status"] == "in_progress":
        errors.append(
            field_error("status", "A finished consultation cannot be reopened.", "invalid_transition")
        )
    now = datetime.now(UTC)
    if "started_at" not in changed:
        errors += _errors(row, max(now, row["started_at"]))
    if errors:
        raise ValidationFailed("The consultation cannot change this way.", errors=errors)
    if row["status"] in ("finished", "signed"):
        row["finished_at"] = row["finished_at"] or now
    if row["status"] == "signed":
        row["signed_at"] = row["signed_at"] or now
        row["signed_by"] = row["signed_by"] or actor.user_id
    if "practitioner_id" in changed and row["practitioner_id"] is not None:
        found = await practitioners.existing_practitioners(conn=conn, ids=[row["practitioner_id"]])
        if not found:
            raise ValidationFailed(
                errors=[field_error("practitioner_id", "No such practitioner.", "not_found")]
            )
    row.update(
        version=prior["version"] + 1,
        updated_at=now,
        extra=extra if extra is not None or not keep_extra else prior["extra"],
    )
    action = "sign" if row["status"] == "signed" and prior["status"] != "signed" else "update"
    written = await repo.update(conn, actor, [row], [log_part(actor, action, RESOURCE)])
    if not written:
        return None
    if action == "sign":
        log.info("consultation_signed", consultation_id=str(row["id"]))
    return row


def _check_version(consultation: Row, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != consultation["version"]:
        raise PreconditionFailed(
            "The consultation changed since you read it; reload and retry.", code="version_mismatch"
        )


async def _revise_through_rest(
    conn: asyncpg.Connection,
    actor: Actor,
    consultation_id: uuid.UUID,
    expected_version: int | None,
    changes: Row,
) -> ConsultationWithAmendments:
    prior = await _load(conn, consultation_id)
    if prior["status"] == "signed":
        raise _signed_error("A signed consultation cannot change; add an amendment instead.")
    _check_version(prior, expected_version)
    row = await revise_consultation(conn=conn, actor=actor, prior=prior, changes=changes)
    if row is None:
        raise PreconditionFailed(
            "The consultation changed since you read it; reload and retry.", code="version_mismatch"
        )
    return ConsultationWithAmendments(row, [])


async def update_note(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    consultation_id: uuid.UUID,
    data: SoapUpdate,
    expected_version: int | None = None,
) -> ConsultationWithAmendments:
    """Edit the SOAP note of an unsigned consultation."""
    return await _revise_through_rest(
        conn, actor, consultation_id, expected_version, data.model_dump(exclude_unset=True)
    )


async def finish_consultation(
    *, conn: asyncpg.Connection, actor: Actor, consultation_id: uuid.UUID, expected_version: int | None = None
) -> ConsultationWithAmendments:
    """Mark the consultation finished (the note can still be edited until it is signed)."""
    return await _revise_through_rest(conn, actor, consultation_id, expected_version, {"status": "finished"})


async def sign_consultation(
    *, conn: asyncpg.Connection, actor: Actor, consultation_id: uuid.UUID, expected_version: int | None = None
) -> ConsultationWithAmendments:
    """Sign: the note becomes immutable (finishing it first if needed)."""
    return await _revise_through_rest(
        conn, actor, consultation_id, expected_version, {"status": "signed", "signed_by": actor.user_id}
    )


async def remove_consultation(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Delete an unsigned consultation (a signed one is part of the legal record: 409)."""
    if prior["status"] == "signed":
        raise _signed_error(f"Encounter/{prior['id']} is a signed consultation and cannot be deleted.")
    row = {**prior, "version": prior["version"] + 1, "updated_at": datetime.now(UTC)}
    written = await repo.delete(conn, actor, [row], [log_part(actor, "delete", RESOURCE)])
    return row if written else None


async def amend_consultation(
    *, conn: asyncpg.Connection, actor: Actor, consultation_id: uuid.UUID, data: AmendmentCreate
) -> Row:
    """Add a correction to a signed consultation (unsigned ones are edited directly)."""
    consultation = await _load(conn, consultation_id)
    if consultation["status"] != "signed":
        raise Conflict(
            "Only signed consultations take amendments; edit the note instead.",
            code="consultation_not_signed",
        )
    amendment = {
        "id": uuid.uuid4(),
        "consultation_id": consultation["id"],
        "consultation_started_at": consultation["started_at"],
        "patient_id": consultation["patient_id"],
        "author_user_id": actor.user_id,
        "author_name": actor.username,
        "created_at": datetime.now(UTC),
        "text": data.text,
        "reason": data.reason,
    }
    also = [
        log_part(actor, "create", AMENDMENT),
        log_part(
            actor,
            "amend",
            RESOURCE,
            patient_id="w.patient_id",
            resource_id="{0}::text",
            name="amended",
            source_args=[str(consultation["id"])],
        ),
    ]
    await repo.add_amendment(conn, actor, amendment, also)
    return amendment


# ---------------------------------------------------------------------------------------------
# merge


async def move_patient_records(
    conn: asyncpg.Connection, actor: Actor, from_id: uuid.UUID, into_id: uuid.UUID
) -> int:
    """Merge mover: a merged patient's consultations (new versions) and amendments go to the survivor."""
    rows = await repo.of_patient(conn, from_id, lock=True)
    now = datetime.now(UTC)
    moved = [{**r, "patient_id": into_id, "version": r["version"] + 1, "updated_at": now} for r in rows]
    if moved:
        await repo.update(
            conn,
            actor,
            moved,
            [log_part(actor, "merge", RESOURCE)],
            columns=("patient_id", "version", "updated_at"),
        )
    amended = await repo.move_amendments(conn, actor, from_id, into_id, [log_part(actor, "merge", AMENDMENT)])
    return len(moved) + amended


# ---------------------------------------------------------------------------------------------
# partitions (operators' commands only: DDL never runs on the request path)

EnsureResult = partitions.EnsureResult


async def prepare_partitions(
    conn: AsyncConnection, *, years_ahead: int = 2, from_year: int | None = None
) -> partitions.EnsureResult:
    """Create the yearly partitions from ``from_year`` (default this year) to this year + ``years_ahead``."""
    return await partitions.ensure_partitions(conn, years_ahead=years_ahead, from_year=from_year)


async def prepare_years(conn: AsyncConnection, years: set[int]) -> list[str]:
    """Create the partitions of exactly these years (a historical import); returns those created."""
    return await partitions.ensure_years(conn, years)


def partition_problems(conn: Connection) -> list[str]:
    """`hims db verify`: this year's and next year's partitions must exist."""
    return partitions.missing_partitions(conn)
