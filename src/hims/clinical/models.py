"""Clinical record tables: observations, conditions, allergies, prescriptions, lab orders.

``consultation_id`` columns carry no foreign key: consultations are partitioned by year and
their key is ``(id, started_at)``, so a foreign key would force every record to copy the
consultation's start time. The service checks the consultation exists for the same patient.
Users (``*_by`` columns) belong to the identity domain, built in parallel: ids without FKs.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from hims.core.db import Base
from hims.core.models import Timestamps, extra_column, uuid_pk

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


def _patient_fk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), ForeignKey("patients.id", ondelete="RESTRICT"))


class Observation(Timestamps, Base):
    """One measured value (a vital sign) coded in LOINC with a UCUM unit."""

    __tablename__ = "observations"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = _patient_fk()
    consultation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # Observations recorded together (one vitals set, e.g. systolic + diastolic) share it.
    group_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    code_system: Mapped[str] = mapped_column(String(64), default=LOINC)
    code: Mapped[str] = mapped_column(String(20))
    display: Mapped[str] = mapped_column(String(120))
    value: Mapped[Decimal] = mapped_column(Numeric(10, 3))
    unit: Mapped[str] = mapped_column(String(20))  # UCUM
    interpretation: Mapped[str | None] = mapped_column(String(4))  # N, H, L, HH, LL
    reference_low: Mapped[Decimal | None] = mapped_column(Numeric(10, 3))
    reference_high: Mapped[Decimal | None] = mapped_column(Numeric(10, 3))
    derived: Mapped[bool] = mapped_column(default=False)
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    extra: Mapped[dict[str, Any] | None] = extra_column()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (Index("ix_observations_patient_code_time", "patient_id", "code", "effective_at"),)


class Condition(Timestamps, Base):
    """A problem-list entry coded in ICD-10-CM."""

    __tablename__ = "conditions"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = _patient_fk()
    consultation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    code_system: Mapped[str] = mapped_column(String(64), default=ICD10CM)
    code: Mapped[str] = mapped_column(String(20))  # ICD-10-CM, or a SNOMED CT id (up to 18 digits)
    display: Mapped[str] = mapped_column(String(300))
    onset_date: Mapped[date | None] = mapped_column(Date)
    abatement_date: Mapped[date | None] = mapped_column(Date)
    clinical_status: Mapped[str] = mapped_column(String(16))
    verification_status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    extra: Mapped[dict[str, Any] | None] = extra_column()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (Index("ix_conditions_patient_status", "patient_id", "clinical_status"),)
    __mapper_args__ = {"version_id_col": version}


class Allergy(Timestamps, Base):
    """An allergy or intolerance to a substance (FHIR AllergyIntolerance)."""

    __tablename__ = "allergies"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = _patient_fk()
    substance: Mapped[str] = mapped_column(String(200))
    code_system: Mapped[str | None] = mapped_column(String(64))  # RxNorm or SNOMED CT
    code: Mapped[str | None] = mapped_column(String(20))
    reaction: Mapped[str | None] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(10))  # mild, moderate, severe
    status: Mapped[str] = mapped_column(String(10))  # active, inactive, resolved
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    extra: Mapped[dict[str, Any] | None] = extra_column()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (Index("ix_allergies_patient_status", "patient_id", "status"),)
    __mapper_args__ = {"version_id_col": version}


class Prescription(Timestamps, Base):
    """A medication request: drug, dose with its unit, route, frequency, duration."""

    __tablename__ = "prescriptions"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = _patient_fk()
    consultation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    drug_name: Mapped[str] = mapped_column(String(200))
    rxnorm_code: Mapped[str | None] = mapped_column(String(20))
    dose_value: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    dose_unit: Mapped[str] = mapped_column(String(20))  # UCUM or a dose form (tablet...)
    route: Mapped[str | None] = mapped_column(String(40))
    frequency: Mapped[str | None] = mapped_column(String(60))
    duration_days: Mapped[int | None] = mapped_column(Integer)
    instructions: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))  # active, completed, cancelled, on-hold
    prescribed_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    prescribed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    extra: Mapped[dict[str, Any] | None] = extra_column()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (Index("ix_prescriptions_patient_status", "patient_id", "status"),)
    __mapper_args__ = {"version_id_col": version}


class AllergyOverride(Base):
    """A prescriber's decision to prescribe despite an allergy conflict: who, when, why, which."""

    __tablename__ = "allergy_overrides"

    id: Mapped[uuid.UUID] = uuid_pk()
    prescription_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("prescriptions.id", ondelete="RESTRICT"), index=True
    )
    allergy_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("allergies.id", ondelete="RESTRICT")
    )
    patient_id: Mapped[uuid.UUID] = _patient_fk()
    substance: Mapped[str] = mapped_column(String(200))
    match: Mapped[str] = mapped_column(String(200))  # why it matched (same substance / drug class)
    reason: Mapped[str] = mapped_column(Text)
    overridden_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    overridden_by_name: Mapped[str] = mapped_column(String(150))
    overridden_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LabOrder(Timestamps, Base):
    """An ordered laboratory test (LOINC) and, once resulted, its value and abnormal flag."""

    __tablename__ = "lab_orders"

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = _patient_fk()
    consultation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    code_system: Mapped[str] = mapped_column(String(64), default=LOINC)
    code: Mapped[str] = mapped_column(String(20))
    display: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))  # ordered, collected, resulted, cancelled
    note: Mapped[str | None] = mapped_column(Text)
    ordered_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    ordered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    collected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resulted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result_value: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    result_unit: Mapped[str | None] = mapped_column(String(30))
    reference_low: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    reference_high: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    abnormal_flag: Mapped[str | None] = mapped_column(String(2))  # N, H, L
    extra: Mapped[dict[str, Any] | None] = extra_column()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (Index("ix_lab_orders_patient_ordered", "patient_id", "ordered_at"),)
    __mapper_args__ = {"version_id_col": version}
