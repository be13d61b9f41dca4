"""Clinical record payloads (Create / Update / Read per record kind) and the chart."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ClinicalStatus = Literal["active", "recurrence", "relapse", "inactive", "remission", "resolved"]
VerificationStatus = Literal[
    "unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"
]
Severity = Literal["mild", "moderate", "severe"]
AllergyStatus = Literal["active", "inactive", "resolved"]
PrescriptionStatus = Literal["active", "completed", "cancelled", "on-hold"]
LabStatus = Literal["ordered", "collected", "resulted", "cancelled"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---------------------------------------------------------------- observations


class VitalsCreate(_In):
    """A set of vital signs taken together; BMI is derived from weight and height."""

    systolic_bp: Decimal | None = Field(default=None, description="mm[Hg], LOINC 8480-6")
    diastolic_bp: Decimal | None = Field(default=None, description="mm[Hg], LOINC 8462-4")
    heart_rate: Decimal | None = Field(default=None, description="/min, LOINC 8867-4")
    body_temperature: Decimal | None = Field(default=None, description="Cel, LOINC 8310-5")
    spo2: Decimal | None = Field(default=None, description="%, LOINC 59408-5")
    respiratory_rate: Decimal | None = Field(default=None, description="/min, LOINC 9279-1")
    body_weight: Decimal | None = Field(default=None, description="kg, LOINC 29463-7")
    body_height: Decimal | None = Field(default=None, description="cm, LOINC 8302-2")
    effective_at: datetime | None = None
    consultation_id: uuid.UUID | None = None


class ObservationRead(_Out):
    """One observation."""

    id: uuid.UUID
    patient_id: uuid.UUID
    consultation_id: uuid.UUID | None
    group_id: uuid.UUID
    code_system: str
    code: str
    display: str
    value: float
    unit: str
    interpretation: str | None
    reference_low: float | None
    reference_high: float | None
    derived: bool
    effective_at: datetime


# ---------------------------------------------------------------- conditions


class ConditionCreate(_In):
    """A problem-list entry."""

    code: str = Field(min_length=3, max_length=10, description="ICD-10-CM code, e.g. E11.9")
    onset_date: date | None = None
    clinical_status: ClinicalStatus = "active"
    verification_status: VerificationStatus = "confirmed"
    note: str | None = Field(default=None, max_length=4000)
    consultation_id: uuid.UUID | None = None


class ConditionUpdate(_In):
    """Change a condition's status, dates or note."""

    clinical_status: ClinicalStatus | None = None
    verification_status: VerificationStatus | None = None
    onset_date: date | None = None
    abatement_date: date | None = None
    note: str | None = Field(default=None, max_length=4000)


class ConditionRead(_Out):
    """A condition."""

    id: uuid.UUID
    patient_id: uuid.UUID
    consultation_id: uuid.UUID | None
    code_system: str
    code: str
    display: str
    onset_date: date | None
    abatement_date: date | None
    clinical_status: str
    verification_status: str
    note: str | None
    version: int
    created_at: datetime


# ---------------------------------------------------------------- allergies


class AllergyCreate(_In):
    """An allergy or intolerance."""

    substance: str = Field(min_length=1, max_length=200)
    code_system: Literal["rxnorm", "snomed"] | None = None
    code: str | None = Field(default=None, pattern=r"^\d{1,18}$")
    reaction: str | None = Field(default=None, max_length=300)
    severity: Severity
    status: AllergyStatus = "active"
    note: str | None = Field(default=None, max_length=4000)


class AllergyUpdate(_In):
    """Change an allergy's status, severity, reaction or note."""

    status: AllergyStatus | None = None
    severity: Severity | None = None
    reaction: str | None = Field(default=None, max_length=300)
    note: str | None = Field(default=None, max_length=4000)


class AllergyRead(_Out):
    """An allergy."""

    id: uuid.UUID
    patient_id: uuid.UUID
    substance: str
    code_system: str | None
    code: str | None
    reaction: str | None
    severity: str
    status: str
    note: str | None
    version: int
    created_at: datetime


# ---------------------------------------------------------------- prescriptions


class PrescriptionCreate(_In):
    """A prescription; dose value AND unit are required."""

    drug_name: str = Field(min_length=1, max_length=200)
    rxnorm_code: str | None = Field(default=None, pattern=r"^\d{1,10}$")
    dose_value: Decimal = Field(gt=0, max_digits=12, decimal_places=4)
    dose_unit: str = Field(min_length=1, max_length=20, description="UCUM unit or dose form, e.g. mg")
    route: str | None = Field(default=None, max_length=40)
    frequency: str | None = Field(default=None, max_length=60)
    duration_days: int | None = Field(default=None, ge=1, le=3650)
    instructions: str | None = Field(default=None, max_length=4000)
    consultation_id: uuid.UUID | None = None
    override_reason: str | None = Field(
        default=None, min_length=3, max_length=2000, description="Required to prescribe despite an allergy"
    )


class PrescriptionUpdate(_In):
    """Change a prescription's status."""

    status: PrescriptionStatus


class AllergyOverrideRead(_Out):
    """A recorded allergy override."""

    allergy_id: uuid.UUID
    substance: str
    match: str
    reason: str
    overridden_by: uuid.UUID | None
    overridden_by_name: str
    overridden_at: datetime


class PrescriptionRead(_Out):
    """A prescription (with the allergy overrides it needed, if any)."""

    id: uuid.UUID
    patient_id: uuid.UUID
    consultation_id: uuid.UUID | None
    drug_name: str
    rxnorm_code: str | None
    dose_value: float
    dose_unit: str
    route: str | None
    frequency: str | None
    duration_days: int | None
    instructions: str | None
    status: str
    prescribed_by: uuid.UUID | None
    prescribed_at: datetime
    version: int
    allergy_overrides: list[AllergyOverrideRead] = []


# ---------------------------------------------------------------- labs


class LabOrderCreate(_In):
    """Order a laboratory test."""

    code: str = Field(description="LOINC code, e.g. 2345-7")
    display: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=4000)
    consultation_id: uuid.UUID | None = None


class LabResultCreate(_In):
    """The result of an ordered test."""

    value: Decimal
    unit: str = Field(min_length=1, max_length=30)
    reference_low: Decimal | None = None
    reference_high: Decimal | None = None


class LabOrderRead(_Out):
    """A lab order and its result."""

    id: uuid.UUID
    patient_id: uuid.UUID
    consultation_id: uuid.UUID | None
    code_system: str
    code: str
    display: str
    status: str
    note: str | None
    ordered_by: uuid.UUID | None
    ordered_at: datetime
    collected_at: datetime | None
    resulted_at: datetime | None
    result_value: float | None
    result_unit: str | None
    reference_low: float | None
    reference_high: float | None
    abnormal_flag: str | None
    version: int


# ---------------------------------------------------------------- chart


class ChartPatient(_Out):
    """Demographics shown on the chart header."""

    id: uuid.UUID
    mrn: str
    given_name: str
    middle_name: str | None
    family_name: str
    date_of_birth: date
    sex_at_birth: str
    gender_identity: str | None
    preferred_language: str | None
    deceased: bool
    active: bool


class ChartConsultation(_Out):
    """A consultation line on the chart."""

    id: uuid.UUID
    kind: str
    status: str
    reason: str | None
    practitioner_id: uuid.UUID | None
    started_at: datetime
    finished_at: datetime | None
    signed_at: datetime | None


class ChartRead(BaseModel):
    """The chart summary. Extra sections registered by other domains appear as extra keys."""

    model_config = ConfigDict(extra="allow")

    patient: ChartPatient
    active_problems: list[ConditionRead]
    allergies: list[AllergyRead]
    active_prescriptions: list[PrescriptionRead]
    latest_vitals: list[ObservationRead]
    recent_consultations: list[ChartConsultation]
    upcoming_appointments: list[Any] = []
