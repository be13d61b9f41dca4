"""Patient payloads: separate shapes for create, update, full read and the minimal list summary."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from hims.patients.countries import ISO_3166_ALPHA2

SexAtBirth = Literal["female", "male", "intersex", "unknown"]
IdentifierType = Literal["national_id", "insurance", "passport", "driver_license", "other"]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
_PHONE_CHARS = re.compile(r"^\+?[0-9 ().\-]+$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")


def check_email(value: str | None) -> str | None:
    """The e-mail address, or ValueError when it is not one."""
    if value is not None and not _EMAIL.match(value):
        raise ValueError("not a valid e-mail address")
    return value


def check_phone(value: str | None) -> str | None:
    """The phone number stripped, or ValueError when it is not one."""
    if value is None:
        return None
    digits = re.sub(r"\D", "", value)
    if not _PHONE_CHARS.match(value) or not 7 <= len(digits) <= 15:
        raise ValueError("a phone number has 7 to 15 digits, optionally +, spaces, dots, dashes, brackets")
    return value.strip()


def check_country(value: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code, or ValueError."""
    if value is not None and value not in ISO_3166_ALPHA2:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code in capitals, e.g. US, GB, NG")
    return value


def check_language(value: str | None) -> str | None:
    """The BCP 47 tag, or ValueError."""
    if value is not None and not _LANGUAGE.match(value):
        raise ValueError("must be a BCP 47 language tag, e.g. en, en-US, pt-BR")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Email = Annotated[str | None, AfterValidator(check_email)]
Phone = Annotated[str | None, AfterValidator(check_phone)]
Country = Annotated[str | None, AfterValidator(check_country)]
Language = Annotated[str | None, AfterValidator(check_language)]


class Identifier(BaseModel):
    """A business identifier with its system (national id, insurance member number...)."""

    model_config = ConfigDict(extra="forbid")

    type: IdentifierType
    system: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class IdentifierRead(BaseModel):
    """An identifier as stored (tolerant: rows written by imports may lack a type)."""

    model_config = ConfigDict(extra="allow")

    type: str | None = None
    system: str | None = None
    value: str


class EmergencyContact(BaseModel):
    """Who to call."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    relationship: Annotated[str, StringConstraints(max_length=50)] | None = None
    phone: Phone = None


class _Demographics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    middle_name: Name | None = None
    gender_identity: Annotated[str, StringConstraints(max_length=64)] | None = None
    phone: Phone = None
    email: Email = None
    address_line: OptionalText | None = None
    city: Annotated[str, StringConstraints(max_length=100)] | None = None
    state: Annotated[str, StringConstraints(max_length=100)] | None = None
    postal_code: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Country = None
    preferred_language: Language = None
    identifiers: list[Identifier] = Field(default_factory=list, max_length=20)
    emergency_contact: EmergencyContact | None = None
    deceased: bool = False
    deceased_at: datetime | None = None


class PatientCreate(_Demographics):
    """Registering a patient."""

    mrn: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] | None = Field(
        None,
        description="An MRN of ours carried over (10 digits with a valid check digit, not in use); "
        "a new one is assigned when absent",
    )
    given_name: Name
    family_name: Name
    date_of_birth: date
    sex_at_birth: SexAtBirth
    allow_duplicate: bool = Field(
        False,
        description="Create even when possible duplicates exist (audited); same as ?allow_duplicate=true",
    )


class PatientUpdate(BaseModel):
    """A partial update (PATCH): only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    given_name: Name | None = None
    middle_name: Name | None = None
    family_name: Name | None = None
    date_of_birth: date | None = None
    sex_at_birth: SexAtBirth | None = None
    gender_identity: Annotated[str, StringConstraints(max_length=64)] | None = None
    phone: Phone = None
    email: Email = None
    address_line: OptionalText | None = None
    city: Annotated[str, StringConstraints(max_length=100)] | None = None
    state: Annotated[str, StringConstraints(max_length=100)] | None = None
    postal_code: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Country = None
    preferred_language: Language = None
    identifiers: list[Identifier] | None = Field(None, max_length=20)
    emergency_contact: EmergencyContact | None = None
    deceased: bool | None = None
    deceased_at: datetime | None = None
    active: bool | None = None


class PatientRead(BaseModel):
    """The full record (one patient, by id)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    mrn: str
    given_name: str
    middle_name: str | None
    family_name: str
    date_of_birth: date
    sex_at_birth: str
    gender_identity: str | None
    phone: str | None
    email: str | None
    address_line: str | None
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None
    preferred_language: str | None
    identifiers: list[IdentifierRead]
    emergency_contact: dict[str, Any] | None
    deceased: bool
    deceased_at: datetime | None
    active: bool
    merged_into_id: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime


class PatientSummary(BaseModel):
    """What a list or search shows: enough to pick the right person, nothing more."""

    id: uuid.UUID
    mrn: str
    display_name: str
    date_of_birth: date
    sex_at_birth: str
    score: float | None = Field(None, description="Fuzzy search only: match score, 0..1")


class PatientPage(BaseModel):
    """A page of summaries; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[PatientSummary]
    next_cursor: str | None


class DuplicateCandidate(BaseModel):
    """An existing patient who may be the same person."""

    id: uuid.UUID
    mrn: str
    display_name: str
    date_of_birth: date
    score: float
    reasons: list[str]


class MergeRequest(BaseModel):
    """Merge this patient into ``into`` (the survivor)."""

    model_config = ConfigDict(extra="forbid")

    into: uuid.UUID


class MergeResult(BaseModel):
    """The survivor and how many rows each domain moved."""

    merged_id: uuid.UUID
    survivor: PatientSummary
    moved: dict[str, int]


def display_name(given: str, family: str, middle: str | None = None) -> str:
    """``Family, Given M.`` as staff read lists."""
    initial = f" {middle[0]}." if middle else ""
    return f"{family}, {given}{initial}"
