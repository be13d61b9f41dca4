"""Facility, department and practitioner payloads (not PHI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hims.patients.schemas import Country, Email, Phone

Code = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Profession = Literal["physician", "nurse", "midwife", "pharmacist", "therapist", "technician", "other"]


class Identifier(BaseModel):
    """An identifier with its system (e.g. NPI)."""

    model_config = ConfigDict(extra="forbid")

    system: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    value: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class FacilityCreate(BaseModel):
    """A new facility."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name
    phone: Phone = None
    address_line: Annotated[str, StringConstraints(max_length=200)] | None = None
    city: Annotated[str, StringConstraints(max_length=100)] | None = None
    state: Annotated[str, StringConstraints(max_length=100)] | None = None
    postal_code: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Country = None
    identifiers: list[Identifier] = Field(default_factory=list, max_length=20)


class FacilityUpdate(BaseModel):
    """Changes to a facility."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    phone: Phone = None
    address_line: Annotated[str, StringConstraints(max_length=200)] | None = None
    city: Annotated[str, StringConstraints(max_length=100)] | None = None
    state: Annotated[str, StringConstraints(max_length=100)] | None = None
    postal_code: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Country = None
    active: bool | None = None


class FacilityRead(BaseModel):
    """A facility."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    phone: str | None
    address_line: str | None
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None
    identifiers: list[dict[str, Any]]
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class DepartmentCreate(BaseModel):
    """A new department of a facility."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name


class DepartmentUpdate(BaseModel):
    """Changes to a department."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    active: bool | None = None


class DepartmentRead(BaseModel):
    """A department."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    facility_id: uuid.UUID
    code: str
    name: str
    active: bool
    version: int


class PractitionerCreate(BaseModel):
    """A new practitioner."""

    model_config = ConfigDict(extra="forbid")

    prefix: Annotated[str, StringConstraints(max_length=20)] | None = None
    given_name: ShortName
    family_name: ShortName
    profession: Profession
    specialty: Annotated[str, StringConstraints(max_length=100)] | None = None
    phone: Phone = None
    email: Email = None
    facility_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    identifiers: list[Identifier] = Field(default_factory=list, max_length=20)


class PractitionerUpdate(BaseModel):
    """Changes to a practitioner."""

    model_config = ConfigDict(extra="forbid")

    prefix: Annotated[str, StringConstraints(max_length=20)] | None = None
    given_name: ShortName | None = None
    family_name: ShortName | None = None
    profession: Profession | None = None
    specialty: Annotated[str, StringConstraints(max_length=100)] | None = None
    phone: Phone = None
    email: Email = None
    facility_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    identifiers: list[Identifier] | None = None
    active: bool | None = None


class PractitionerRead(BaseModel):
    """A practitioner."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    prefix: str | None
    given_name: str
    family_name: str
    profession: str
    specialty: str | None
    phone: str | None
    email: str | None
    facility_id: uuid.UUID | None
    department_id: uuid.UUID | None
    identifiers: list[dict[str, Any]]
    active: bool
    version: int
