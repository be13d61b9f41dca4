"""Consultation endpoints (thin): /api/v1/patients/{id}/consultations and /api/v1/consultations/{id}."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from hims.consultations import service
from hims.consultations.schemas import (
    AmendmentCreate,
    AmendmentRead,
    ConsultationRead,
    ConsultationStart,
    ConsultationSummary,
    SoapUpdate,
)
from hims.core.deps import ConnDep
from hims.core.etag import etag, if_match_version
from hims.core.security import Actor, require

router = APIRouter(prefix="/api/v1", tags=["consultations"])

Reader = Annotated[Actor, require("consultation:read")]
Writer = Annotated[Actor, require("consultation:write")]
Signer = Annotated[Actor, require("consultation:sign")]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _read(result: service.ConsultationWithAmendments, response: Response) -> ConsultationRead:
    body = ConsultationRead.model_validate(result.consultation)
    body.amendments = [AmendmentRead.model_validate(a) for a in result.amendments]
    response.headers["ETag"] = etag(result.consultation["version"])
    return body


@router.post("/patients/{patient_id}/consultations", status_code=201)
async def start(
    patient_id: uuid.UUID, data: ConsultationStart, actor: Writer, conn: ConnDep, response: Response
) -> ConsultationRead:
    """Start a consultation (walk-in, or from an appointment)."""
    consultation = await service.start_consultation(conn=conn, actor=actor, patient_id=patient_id, data=data)
    return _read(service.ConsultationWithAmendments(consultation, []), response)


@router.get("/patients/{patient_id}/consultations")
async def list_for_patient(
    patient_id: uuid.UUID,
    actor: Reader,
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ConsultationSummary]:
    """A patient's consultations, newest first."""
    rows = await service.list_consultations(
        conn=conn, actor=actor, patient_id=patient_id, limit=limit, offset=offset
    )
    return [ConsultationSummary.model_validate(r) for r in rows]


@router.get("/consultations/{consultation_id}")
async def read(
    consultation_id: uuid.UUID, actor: Reader, conn: ConnDep, response: Response
) -> ConsultationRead:
    """One consultation with its SOAP note and amendments (ETag = version)."""
    result = await service.get_consultation(conn=conn, actor=actor, consultation_id=consultation_id)
    return _read(result, response)


@router.patch("/consultations/{consultation_id}")
async def update_note(
    consultation_id: uuid.UUID,
    data: SoapUpdate,
    actor: Writer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConsultationRead:
    """Edit the SOAP note (409 consultation_signed once signed; 412 on a stale If-Match)."""
    result = await service.update_note(
        conn=conn,
        actor=actor,
        consultation_id=consultation_id,
        data=data,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(result, response)


@router.post("/consultations/{consultation_id}/finish")
async def finish(
    consultation_id: uuid.UUID,
    actor: Writer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConsultationRead:
    """Finish the consultation."""
    result = await service.finish_consultation(
        conn=conn,
        actor=actor,
        consultation_id=consultation_id,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(result, response)


@router.post("/consultations/{consultation_id}/sign")
async def sign(
    consultation_id: uuid.UUID,
    actor: Signer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConsultationRead:
    """Sign the consultation; it becomes immutable."""
    result = await service.sign_consultation(
        conn=conn,
        actor=actor,
        consultation_id=consultation_id,
        expected_version=if_match_version(if_match, required=False),
    )
    return _read(result, response)


@router.post("/consultations/{consultation_id}/amendments", status_code=201)
async def amend(
    consultation_id: uuid.UUID, data: AmendmentCreate, actor: Signer, conn: ConnDep
) -> AmendmentRead:
    """Add an amendment to a signed consultation."""
    amendment = await service.amend_consultation(
        conn=conn, actor=actor, consultation_id=consultation_id, data=data
    )
    return AmendmentRead.model_validate(amendment)
