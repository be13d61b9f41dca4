"""Consultation payloads: separate Create / Update / Read / Summary shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NOTE_MAX = 20000


class ConsultationStart(BaseModel):
    """Start a consultation: walk-in (no appointment) or from an appointment."""

    model_config = ConfigDict(extra="forbid")

    appointment_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None
    reason: str | None = Field(default=None, max_length=2000)
    # For documenting a visit after the fact; defaults to now and may not be in the future.
    started_at: datetime | None = None


class SoapUpdate(BaseModel):
    """Edit the SOAP note (only the fields sent change)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)
    subjective: str | None = Field(default=None, max_length=NOTE_MAX)
    objective: str | None = Field(default=None, max_length=NOTE_MAX)
    assessment: str | None = Field(default=None, max_length=NOTE_MAX)
    plan: str | None = Field(default=None, max_length=NOTE_MAX)


class AmendmentCreate(BaseModel):
    """A correction to a signed consultation."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=NOTE_MAX)
    reason: str = Field(min_length=1, max_length=2000)


class AmendmentRead(BaseModel):
    """An amendment as returned."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    author_user_id: uuid.UUID | None
    author_name: str
    created_at: datetime
    text: str
    reason: str


class ConsultationSummary(BaseModel):
    """What lists and the chart show: no note text."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID | None
    appointment_id: uuid.UUID | None
    kind: Literal["walk_in", "appointment"]
    status: Literal["in_progress", "finished", "signed"]
    started_at: datetime
    finished_at: datetime | None
    signed_at: datetime | None


class ConsultationRead(ConsultationSummary):
    """The full consultation with its SOAP note and amendments."""

    reason: str | None
    subjective: str | None
    objective: str | None
    assessment: str | None
    plan: str | None
    started_by: uuid.UUID | None
    signed_by: uuid.UUID | None
    version: int
    amendments: list[AmendmentRead] = []
