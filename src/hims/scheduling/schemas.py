"""Appointment payloads."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

AppointmentType = Literal["in_person", "telemedicine"]
AppointmentStatus = Literal["booked", "checked_in", "completed", "cancelled", "no_show"]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class AppointmentCreate(BaseModel):
    """Booking a slot."""

    model_config = ConfigDict(extra="forbid")

    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    type: AppointmentType = "in_person"
    reason: Reason | None = None
    facility_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None


class AppointmentReschedule(BaseModel):
    """Moving a booked appointment."""

    model_config = ConfigDict(extra="forbid")

    starts_at: datetime
    ends_at: datetime
    practitioner_id: uuid.UUID | None = None


class AppointmentCancel(BaseModel):
    """Cancelling, with the reason."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


class AppointmentRead(BaseModel):
    """An appointment."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    facility_id: uuid.UUID | None
    department_id: uuid.UUID | None
    starts_at: datetime
    ends_at: datetime
    type: str
    reason: str | None
    status: str
    cancel_reason: str | None
    checked_in_at: datetime | None
    cancelled_at: datetime | None
    completed_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class AppointmentPage(BaseModel):
    """A page of appointments in start order."""

    items: list[AppointmentRead]
    next_cursor: str | None
