"""`/api/v1/facilities`, `/api/v1/facilities/{id}/departments`, `/api/v1/practitioners`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from hims.core.deps import ConnDep
from hims.core.etag import etag, if_match_version
from hims.core.security import Actor, require
from hims.practitioners import service
from hims.practitioners.schemas import (
    DepartmentCreate,
    DepartmentRead,
    DepartmentUpdate,
    FacilityCreate,
    FacilityRead,
    FacilityUpdate,
    PractitionerCreate,
    PractitionerRead,
    PractitionerUpdate,
    Profession,
)

# `actor` comes before `conn` in every route: FastAPI resolves dependencies in that order, and
# authenticating may read the account from the database, so a request holding its connection
# first would hold two (a burst of them emptied the pool, answering 503).
router = APIRouter(prefix="/api/v1", tags=["practitioners"])

Read = Annotated[Actor, require("practitioner:read")]
Write = Annotated[Actor, require("practitioner:write")]
IfMatch = Annotated[str | None, Header(alias="If-Match")]
Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0)]


@router.get("/facilities", response_model=list[FacilityRead])
async def list_facilities(
    actor: Read, conn: ConnDep, active: bool | None = None, limit: Limit = 50, offset: Offset = 0
) -> list[FacilityRead]:
    """Facilities by name."""
    rows = await service.list_facilities(conn=conn, active=active, limit=limit, offset=offset)
    return [FacilityRead.model_validate(r) for r in rows]


@router.post("/facilities", status_code=201, response_model=FacilityRead)
async def create_facility(
    body: FacilityCreate, response: Response, actor: Write, conn: ConnDep
) -> FacilityRead:
    """Add a facility."""
    facility = await service.create_facility(conn=conn, actor=actor, data=body)
    response.headers["Location"] = f"{router.prefix}/facilities/{facility['id']}"
    response.headers["ETag"] = etag(facility["version"])
    return FacilityRead.model_validate(facility)


@router.get("/facilities/{facility_id}", response_model=FacilityRead)
async def read_facility(
    facility_id: uuid.UUID, response: Response, actor: Read, conn: ConnDep
) -> FacilityRead:
    """One facility."""
    facility = await service.get_facility(conn=conn, facility_id=facility_id)
    response.headers["ETag"] = etag(facility["version"])
    return FacilityRead.model_validate(facility)


@router.patch("/facilities/{facility_id}", response_model=FacilityRead)
async def update_facility(
    facility_id: uuid.UUID,
    body: FacilityUpdate,
    response: Response,
    actor: Write,
    conn: ConnDep,
    if_match: IfMatch = None,
) -> FacilityRead:
    """Change a facility (If-Match optional; 412 when stale)."""
    facility = await service.update_facility(
        conn=conn,
        actor=actor,
        facility_id=facility_id,
        data=body,
        expected_version=if_match_version(if_match, required=False),
    )
    response.headers["ETag"] = etag(facility["version"])
    return FacilityRead.model_validate(facility)


@router.delete("/facilities/{facility_id}", status_code=204)
async def deactivate_facility(facility_id: uuid.UUID, actor: Write, conn: ConnDep) -> Response:
    """Retire a facility (kept for history: inactive here, deleted in FHIR)."""
    await service.deactivate_facility(conn=conn, actor=actor, facility_id=facility_id)
    return Response(status_code=204)


@router.get("/facilities/{facility_id}/departments", response_model=list[DepartmentRead])
async def list_departments(
    facility_id: uuid.UUID, actor: Read, conn: ConnDep, active: bool | None = None
) -> list[DepartmentRead]:
    """A facility's departments."""
    rows = await service.list_departments(conn=conn, facility_id=facility_id, active=active)
    return [DepartmentRead.model_validate(r) for r in rows]


@router.post("/facilities/{facility_id}/departments", status_code=201, response_model=DepartmentRead)
async def create_department(
    facility_id: uuid.UUID, body: DepartmentCreate, response: Response, actor: Write, conn: ConnDep
) -> DepartmentRead:
    """Add a department to a facility."""
    department = await service.create_department(conn=conn, actor=actor, facility_id=facility_id, data=body)
    response.headers["Location"] = f"{router.prefix}/facilities/{facility_id}/departments/{department['id']}"
    return DepartmentRead.model_validate(department)


@router.get("/facilities/{facility_id}/departments/{department_id}", response_model=DepartmentRead)
async def read_department(
    facility_id: uuid.UUID, department_id: uuid.UUID, actor: Read, conn: ConnDep
) -> DepartmentRead:
    """One department."""
    department = await service.get_department(conn=conn, facility_id=facility_id, department_id=department_id)
    return DepartmentRead.model_validate(department)


@router.patch("/facilities/{facility_id}/departments/{department_id}", response_model=DepartmentRead)
async def update_department(
    facility_id: uuid.UUID,
    department_id: uuid.UUID,
    body: DepartmentUpdate,
    actor: Write,
    conn: ConnDep,
    if_match: IfMatch = None,
) -> DepartmentRead:
    """Change a department."""
    department = await service.update_department(
        conn=conn,
        actor=actor,
        facility_id=facility_id,
        department_id=department_id,
        data=body,
        expected_version=if_match_version(if_match, required=False),
    )
    return DepartmentRead.model_validate(department)


@router.delete("/facilities/{facility_id}/departments/{department_id}", status_code=204)
async def deactivate_department(
    facility_id: uuid.UUID, department_id: uuid.UUID, actor: Write, conn: ConnDep
) -> Response:
    """Retire a department (kept for history: inactive here, deleted in FHIR)."""
    await service.deactivate_department(
        conn=conn, actor=actor, facility_id=facility_id, department_id=department_id
    )
    return Response(status_code=204)


@router.get("/practitioners", response_model=list[PractitionerRead])
async def list_practitioners(
    actor: Read,
    conn: ConnDep,
    facility_id: uuid.UUID | None = None,
    department_id: uuid.UUID | None = None,
    profession: Profession | None = None,
    name: Annotated[str | None, Query(max_length=100)] = None,
    active: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[PractitionerRead]:
    """Practitioners, filtered."""
    rows = await service.list_practitioners(
        conn=conn,
        facility_id=facility_id,
        department_id=department_id,
        profession=profession,
        name=name,
        active=active,
        limit=limit,
        offset=offset,
    )
    return [PractitionerRead.model_validate(r) for r in rows]


@router.post("/practitioners", status_code=201, response_model=PractitionerRead)
async def create_practitioner(
    body: PractitionerCreate, response: Response, actor: Write, conn: ConnDep
) -> PractitionerRead:
    """Add a practitioner."""
    practitioner = await service.create_practitioner(conn=conn, actor=actor, data=body)
    response.headers["Location"] = f"{router.prefix}/practitioners/{practitioner['id']}"
    response.headers["ETag"] = etag(practitioner["version"])
    return PractitionerRead.model_validate(practitioner)


@router.get("/practitioners/{practitioner_id}", response_model=PractitionerRead)
async def read_practitioner(
    practitioner_id: uuid.UUID, response: Response, actor: Read, conn: ConnDep
) -> PractitionerRead:
    """One practitioner."""
    practitioner = await service.get_practitioner(conn=conn, practitioner_id=practitioner_id)
    response.headers["ETag"] = etag(practitioner["version"])
    return PractitionerRead.model_validate(practitioner)


@router.patch("/practitioners/{practitioner_id}", response_model=PractitionerRead)
async def update_practitioner(
    practitioner_id: uuid.UUID,
    body: PractitionerUpdate,
    response: Response,
    actor: Write,
    conn: ConnDep,
    if_match: IfMatch = None,
) -> PractitionerRead:
    """Change a practitioner (If-Match optional; 412 when stale)."""
    practitioner = await service.update_practitioner(
        conn=conn,
        actor=actor,
        practitioner_id=practitioner_id,
        data=body,
        expected_version=if_match_version(if_match, required=False),
    )
    response.headers["ETag"] = etag(practitioner["version"])
    return PractitionerRead.model_validate(practitioner)


@router.delete("/practitioners/{practitioner_id}", status_code=204)
async def deactivate_practitioner(practitioner_id: uuid.UUID, actor: Write, conn: ConnDep) -> Response:
    """Retire a practitioner (inactive here, deleted in FHIR; history keeps pointing at them)."""
    await service.deactivate_practitioner(conn=conn, actor=actor, practitioner_id=practitioner_id)
    return Response(status_code=204)
