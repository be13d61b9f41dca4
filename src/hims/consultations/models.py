"""`consultations` (range-partitioned by year on ``started_at``) and their amendments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from hims.core.db import Base
from hims.core.models import Timestamps, extra_column, uuid_pk

#: Lifecycle: in_progress → finished → signed (signed is final; corrections are amendments).
CONSULTATION_STATUSES = ("in_progress", "finished", "signed")


class Consultation(Timestamps, Base):
    """One encounter between a patient and a clinician.

    The table is partitioned by year on ``started_at`` (guide §9.1), so PostgreSQL requires the
    partition key in the primary key: the key is ``(id, started_at)``; ``id`` alone is still
    unique in practice (UUIDv4) and is what URLs carry. Lookups by ``id`` use the key's index
    (its leading column); a separate ``id`` index was dropped in 0010_consultations_id_index.
    """

    __tablename__ = "consultations"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), default=uuid.uuid4)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    patient_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("patients.id", ondelete="RESTRICT")
    )
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("practitioners.id", ondelete="RESTRICT")
    )
    # Appointments belong to the scheduling domain (built on a parallel branch, so no foreign key
    # in this migration); the service checks it through `hims.scheduling.service.check_startable`.
    appointment_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    kind: Mapped[str] = mapped_column(String(16))  # walk_in, appointment
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    reason: Mapped[str | None] = mapped_column(Text)
    subjective: Mapped[str | None] = mapped_column(Text)
    objective: Mapped[str | None] = mapped_column(Text)
    assessment: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    signed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Users live in the identity domain (parallel branch): ids without foreign keys.
    started_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    signed_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    extra: Mapped[dict[str, Any] | None] = extra_column()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (
        PrimaryKeyConstraint("id", "started_at", name="pk_consultations"),
        Index("ix_consultations_patient_started", "patient_id", "started_at"),
        Index(
            "ix_consultations_appointment_id",
            "appointment_id",
            postgresql_where=text("appointment_id IS NOT NULL"),
        ),
        {"postgresql_partition_by": "RANGE (started_at)"},
    )
    __mapper_args__ = {"version_id_col": version}


class ConsultationKey(Base):
    """Where each consultation lives: its id → ``started_at``, the partition key.

    A lookup by ``id`` alone probes the key index of every yearly partition (74 for a Synthea
    history, about half a millisecond); with ``started_at`` from here PostgreSQL prunes to the
    one partition at execution (`consultation_partition_filter`). Kept by a trigger on
    ``consultations`` (migration 0012_consultation_keys), so every writer, ORM or not, keeps it;
    its primary key also makes a consultation id unique across partitions.
    """

    __tablename__ = "consultation_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def consultation_partition_filter(match: str, count: int) -> str:
    """`` AND …`` narrowing a ``consultations`` query for ``count`` ids (``match``, e.g.
    ``id = $1``) to their partition, so PostgreSQL prunes the others when the statement starts;
    empty unless ``count`` is 1 (``started_at = ANY(...)`` of several ids would only filter every
    partition, not prune them)."""
    if count != 1:
        return ""
    # ``match`` is SQL of ours (`hims.fhir.repository.any_of`); values travel as parameters.
    return f" AND started_at = (SELECT k.started_at FROM consultation_keys k WHERE k.{match})"  # noqa: S608


class ConsultationAmendment(Base):
    """A correction to a signed consultation, with its own author, time and reason."""

    __tablename__ = "consultation_amendments"

    id: Mapped[uuid.UUID] = uuid_pk()
    consultation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    consultation_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    patient_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("patients.id", ondelete="RESTRICT"), index=True
    )
    # The author is a user of the identity domain (parallel branch): no foreign key yet.
    author_user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    author_name: Mapped[str] = mapped_column(String(150))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    text: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(
            ["consultation_id", "consultation_started_at"],
            ["consultations.id", "consultations.started_at"],
            name="fk_consultation_amendments_consultation",
            ondelete="RESTRICT",
        ),
        Index("ix_consultation_amendments_consultation", "consultation_id", "consultation_started_at"),
    )
