"""`/api/v1/appointments`: book, list, read, reschedule, cancel, check in, no-show, complete."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from hims.core.deps import ConnDep
from hims.core.etag import etag, if_match_version
from hims.core.records import Row
from hims.core.security import Actor, require
from hims.scheduling import service
from hims.scheduling.schemas import (
    AppointmentCancel,
    AppointmentCreate,
    AppointmentPage,
    AppointmentRead,
    AppointmentReschedule,
    AppointmentStatus,
)

# `actor` comes before `conn` in every route: FastAPI resolves dependencies in that order, and
# authenticating may read the account from the database, so a request holding its connection
# first would hold two (a burst of them emptied the pool, answering 503).
router = APIRouter(prefix="/api/v1/appointments", tags=["appointments"])

Read = Annotated[Actor, require("appointment:read")]
Write = Annotated[Actor, require("appointment:write")]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _read(appointment: Row, response: Response) -> AppointmentRead:
    response.headers["ETag"] = etag(appointment["version"])
    return AppointmentRead.model_validate(appointment)


@router.post("", status_code=201, response_model=AppointmentRead)
async def book(body: AppointmentCreate, response: Response, actor: Write, conn: ConnDep) -> AppointmentRead:
    """Book an appointment (409 ``double_booking`` when the practitioner is taken)."""
    appointment = await service.book_appointment(conn=conn, actor=actor, data=body)
    response.headers["Location"] = f"{router.prefix}/{appointment['id']}"
    return _read(appointment, response)


@router.get("", response_model=AppointmentPage)
async def list_appointments(
    actor: Read,
    conn: ConnDep,
    day: Annotated[date | None, Query(alias="date")] = None,
    tz: Annotated[str, Query(max_length=64)] = "UTC",
    starts_from: Annotated[datetime | None, Query(alias="from")] = None,
    starts_before: Annotated[datetime | None, Query(alias="to")] = None,
    practitioner_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
    status: Annotated[list[AppointmentStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> AppointmentPage:
    """Appointments in start order: by ``date`` (in ``tz``), practitioner, patient, status."""
    items, next_cursor = await service.list_appointments(
        conn=conn,
        actor=actor,
        day=day,
        tz=tz,
        starts_from=starts_from,
        starts_before=starts_before,
        practitioner_id=practitioner_id,
        patient_id=patient_id,
        statuses=list(status) if status else None,
        limit=limit,
        cursor=cursor,
    )
    return AppointmentPage(items=[AppointmentRead.model_validate(a) for a in items], next_cursor=next_cursor)


@router.get("/{appointment_id}", response_model=AppointmentRead)
async def read(appointment_id: uuid.UUID, response: Response, actor: Read, conn: ConnDep) -> AppointmentRead:
    """One appointment."""
    appointment = await service.get_appointment(conn=conn, actor=actor, appointment_id=appointment_id)
    return _read(appointment, response)


@router.post("/{appointment_id}/reschedule", response_model=AppointmentRead)
async def reschedule(
    appointment_id: uuid.UUID,
    body: AppointmentReschedule,
    response: Response,
    actor: Write,
    conn: ConnDep,
    if_match: IfMatch = None,
) -> AppointmentRead:
    """Move a booked appointment."""
    appointment = await service.reschedule_appointment(
        conn=conn,
        actor=actor,
        appointment_id=appointment_id,
        data=body,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(appointment, response)


@router.post("/{appointment_id}/cancel", response_model=AppointmentRead)
async def cancel(
    appointment_id: uuid.UUID,
    body: AppointmentCancel,
    response: Response,
    actor: Write,
    conn: ConnDep,
    if_match: IfMatch = None,
) -> AppointmentRead:
    """Cancel with a reason."""
    appointment = await service.cancel_appointment(
        conn=conn,
        actor=actor,
        appointment_id=appointment_id,
        reason=body.reason,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(appointment, response)


@router.post("/{appointment_id}/check-in", response_model=AppointmentRead)
async def check_in(
    appointment_id: uuid.UUID, response: Response, actor: Write, conn: ConnDep, if_match: IfMatch = None
) -> AppointmentRead:
    """The patient arrived."""
    appointment = await service.check_in_appointment(
        conn=conn,
        actor=actor,
        appointment_id=appointment_id,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(appointment, response)


@router.post("/{appointment_id}/no-show", response_model=AppointmentRead)
async def no_show(
    appointment_id: uuid.UUID, response: Response, actor: Write, conn: ConnDep, if_match: IfMatch = None
) -> AppointmentRead:
    """The patient did not come."""
    appointment = await service.mark_no_show(
        conn=conn,
        actor=actor,
        appointment_id=appointment_id,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(appointment, response)


@router.post("/{appointment_id}/complete", response_model=AppointmentRead)
async def complete(
    appointment_id: uuid.UUID, response: Response, actor: Write, conn: ConnDep, if_match: IfMatch = None
) -> AppointmentRead:
    """The visit took place."""
    appointment = await service.complete_appointment(
        conn=conn,
        actor=actor,
        appointment_id=appointment_id,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(appointment, response)
