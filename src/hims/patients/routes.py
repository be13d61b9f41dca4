"""`/api/v1/patients`: register, read, update, delete, search, merge."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from hims.core.deps import ConnDep
from hims.core.etag import etag, if_match_version
from hims.core.security import Actor, require
from hims.patients import service
from hims.patients.schemas import (
    MergeRequest,
    MergeResult,
    PatientCreate,
    PatientPage,
    PatientRead,
    PatientUpdate,
)

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])

IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _location(patient_id: uuid.UUID) -> str:
    return f"{router.prefix}/{patient_id}"


@router.post("", status_code=201, response_model=PatientRead)
async def create_patient(
    body: PatientCreate,
    response: Response,
    actor: Annotated[Actor, require("patient:write")],
    conn: ConnDep,
    allow_duplicate: bool = False,
) -> PatientRead:
    """Register a patient (409 ``possible_duplicates`` lists candidates unless allow_duplicate)."""
    patient = await service.create_patient(conn=conn, actor=actor, data=body, allow_duplicate=allow_duplicate)
    response.headers["Location"] = _location(patient["id"])
    response.headers["ETag"] = etag(patient["version"])
    return PatientRead.model_validate(patient)


@router.get("", response_model=PatientPage)
async def search_patients(
    actor: Annotated[Actor, require("patient:read")],
    conn: ConnDep,
    family: Annotated[str | None, Query(max_length=100)] = None,
    given: Annotated[str | None, Query(max_length=100)] = None,
    birth_date: date | None = None,
    mrn: Annotated[str | None, Query(max_length=20)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    fuzzy: bool = False,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> PatientPage:
    """Search live patients; names by prefix (case/accent-insensitive) or ``fuzzy=true``."""
    query = service.SearchQuery(
        family=family, given=given, birth_date=birth_date, mrn=mrn, phone=phone, q=q, fuzzy=fuzzy
    )
    items, next_cursor = await service.search_patients(
        conn=conn, actor=actor, query=query, limit=limit, cursor=cursor
    )
    return PatientPage(items=items, next_cursor=next_cursor)


@router.get("/{patient_id}", response_model=PatientRead, responses={308: {"description": "Merged"}})
async def read_patient(
    patient_id: uuid.UUID,
    response: Response,
    actor: Annotated[Actor, require("patient:read")],
    conn: ConnDep,
) -> PatientRead | JSONResponse:
    """One patient; a merged record answers 308 pointing at the survivor."""
    patient = await service.get_patient(conn=conn, actor=actor, patient_id=patient_id)
    if patient["merged_into_id"] is not None:
        return JSONResponse(
            {"code": "patient_merged", "merged_into": str(patient["merged_into_id"])},
            status_code=308,
            headers={"Location": _location(patient["merged_into_id"])},
        )
    response.headers["ETag"] = etag(patient["version"])
    return PatientRead.model_validate(patient)


@router.patch("/{patient_id}", response_model=PatientRead)
async def update_patient(
    patient_id: uuid.UUID,
    body: PatientUpdate,
    response: Response,
    actor: Annotated[Actor, require("patient:write")],
    conn: ConnDep,
    if_match: IfMatch = None,
) -> PatientRead:
    """Change some fields; needs ``If-Match`` with the ETag read (412 when stale, 428 when absent)."""
    expected = if_match_version(if_match, required=True)
    patient = await service.update_patient(
        conn=conn, actor=actor, patient_id=patient_id, data=body, expected_version=expected
    )
    response.headers["ETag"] = etag(patient["version"])
    return PatientRead.model_validate(patient)


@router.delete("/{patient_id}", status_code=204)
async def delete_patient(
    patient_id: uuid.UUID,
    actor: Annotated[Actor, require("patient:write")],
    conn: ConnDep,
    if_match: IfMatch = None,
) -> Response:
    """Soft delete (the record is retained; reads answer 410)."""
    await service.delete_patient(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        expected_version=if_match_version(if_match, required=False),
    )
    return Response(status_code=204)


@router.post("/{patient_id}/merge", response_model=MergeResult)
async def merge_patient(
    patient_id: uuid.UUID,
    body: MergeRequest,
    request: Request,
    actor: Annotated[Actor, require("patient:merge")],
    conn: ConnDep,
    if_match: IfMatch = None,
) -> MergeResult:
    """Merge this patient into ``into``; all records move to the survivor."""
    outcome = await service.merge_patients(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        into_id=body.into,
        movers=request.app.state.merge_movers,
        expected_version=if_match_version(if_match, required=False),
    )
    return MergeResult(
        merged_id=outcome.merged["id"], survivor=service.summary(outcome.survivor), moved=outcome.moved
    )
