"""Clinical record endpoints (thin), all under /api/v1/patients/{patient_id}/."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from hims.clinical import chart, service
from hims.clinical.schemas import (
    AllergyCreate,
    AllergyOverrideRead,
    AllergyRead,
    AllergyUpdate,
    ChartRead,
    ConditionCreate,
    ConditionRead,
    ConditionUpdate,
    LabOrderCreate,
    LabOrderRead,
    LabResultCreate,
    ObservationRead,
    PrescriptionCreate,
    PrescriptionRead,
    PrescriptionUpdate,
    VitalsCreate,
)
from hims.core.deps import ConnDep
from hims.core.etag import etag, if_match_version
from hims.core.records import Row
from hims.core.security import Actor, require

router = APIRouter(prefix="/api/v1/patients/{patient_id}", tags=["clinical"])

Reader = Annotated[Actor, require("clinical:read")]
Writer = Annotated[Actor, require("clinical:write")]
Prescriber = Annotated[Actor, require("prescription:write")]
#: The version a change was made from (the ETag of a REST read, or a FHIR versionId): 412 when
#: the record changed since. Optional: without it the change applies to the current version.
IfMatch = Annotated[str | None, Header(alias="If-Match")]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


def _tagged(response: Response, row: Row) -> None:
    """The record's version as its ETag (the same number as its FHIR versionId)."""
    response.headers["ETag"] = etag(int(row["version"]))


def _prescription(result: service.PrescriptionWithOverrides) -> PrescriptionRead:
    body = PrescriptionRead.model_validate(result.prescription)
    body.allergy_overrides = [AllergyOverrideRead.model_validate(o) for o in result.overrides]
    return body


@router.get("/chart")
async def get_chart(patient_id: uuid.UUID, actor: Reader, conn: ConnDep) -> ChartRead:
    """The chart summary."""
    return await chart.get_chart(conn=conn, actor=actor, patient_id=patient_id)


# ---------------------------------------------------------------- observations


@router.post("/observations", status_code=201)
async def record_vitals(
    patient_id: uuid.UUID, data: VitalsCreate, actor: Writer, conn: ConnDep
) -> list[ObservationRead]:
    """Record a set of vital signs (BMI derived from weight and height)."""
    rows = await service.record_vitals(conn=conn, actor=actor, patient_id=patient_id, data=data)
    return [ObservationRead.model_validate(r) for r in rows]


@router.get("/observations")
async def list_observations(
    patient_id: uuid.UUID,
    actor: Reader,
    conn: ConnDep,
    code: Annotated[str | None, Query(max_length=20, description="LOINC code")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ObservationRead]:
    """Observations, newest first."""
    rows = await service.list_observations(
        conn=conn, actor=actor, patient_id=patient_id, code=code, limit=limit, offset=offset
    )
    return [ObservationRead.model_validate(r) for r in rows]


# ---------------------------------------------------------------- conditions


@router.post("/conditions", status_code=201)
async def add_condition(
    patient_id: uuid.UUID, data: ConditionCreate, actor: Writer, conn: ConnDep
) -> ConditionRead:
    """Add a problem (ICD-10-CM)."""
    row = await service.add_condition(conn=conn, actor=actor, patient_id=patient_id, data=data)
    return ConditionRead.model_validate(row)


@router.get("/conditions")
async def list_conditions(
    patient_id: uuid.UUID, actor: Reader, conn: ConnDep, limit: Limit = 100, offset: Offset = 0
) -> list[ConditionRead]:
    """The problem list."""
    rows = await service.list_conditions(
        conn=conn, actor=actor, patient_id=patient_id, limit=limit, offset=offset
    )
    return [ConditionRead.model_validate(r) for r in rows]


@router.get("/conditions/{condition_id}")
async def get_condition(
    patient_id: uuid.UUID, condition_id: uuid.UUID, actor: Reader, conn: ConnDep, response: Response
) -> ConditionRead:
    """One condition (its ETag is its version)."""
    row = await service.get_condition(
        conn=conn, actor=actor, patient_id=patient_id, condition_id=condition_id
    )
    _tagged(response, row)
    return ConditionRead.model_validate(row)


@router.patch("/conditions/{condition_id}")
async def update_condition(
    patient_id: uuid.UUID,
    condition_id: uuid.UUID,
    data: ConditionUpdate,
    actor: Writer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> ConditionRead:
    """Change a condition's status, dates or note (412 on a stale If-Match)."""
    row = await service.update_condition(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        condition_id=condition_id,
        data=data,
        expected_version=if_match_version(if_match, required=False),
    )
    _tagged(response, row)
    return ConditionRead.model_validate(row)


# ---------------------------------------------------------------- allergies


@router.post("/allergies", status_code=201)
async def add_allergy(
    patient_id: uuid.UUID, data: AllergyCreate, actor: Writer, conn: ConnDep
) -> AllergyRead:
    """Record an allergy."""
    row = await service.add_allergy(conn=conn, actor=actor, patient_id=patient_id, data=data)
    return AllergyRead.model_validate(row)


@router.get("/allergies")
async def list_allergies(
    patient_id: uuid.UUID, actor: Reader, conn: ConnDep, limit: Limit = 100, offset: Offset = 0
) -> list[AllergyRead]:
    """Allergies (all statuses)."""
    rows = await service.list_allergies(
        conn=conn, actor=actor, patient_id=patient_id, limit=limit, offset=offset
    )
    return [AllergyRead.model_validate(r) for r in rows]


@router.get("/allergies/{allergy_id}")
async def get_allergy(
    patient_id: uuid.UUID, allergy_id: uuid.UUID, actor: Reader, conn: ConnDep, response: Response
) -> AllergyRead:
    """One allergy (its ETag is its version)."""
    row = await service.get_allergy(conn=conn, actor=actor, patient_id=patient_id, allergy_id=allergy_id)
    _tagged(response, row)
    return AllergyRead.model_validate(row)


@router.patch("/allergies/{allergy_id}")
async def update_allergy(
    patient_id: uuid.UUID,
    allergy_id: uuid.UUID,
    data: AllergyUpdate,
    actor: Writer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> AllergyRead:
    """Change an allergy (412 on a stale If-Match)."""
    row = await service.update_allergy(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        allergy_id=allergy_id,
        data=data,
        expected_version=if_match_version(if_match, required=False),
    )
    _tagged(response, row)
    return AllergyRead.model_validate(row)


# ---------------------------------------------------------------- prescriptions


@router.post("/prescriptions", status_code=201)
async def prescribe(
    patient_id: uuid.UUID, data: PrescriptionCreate, actor: Prescriber, conn: ConnDep
) -> PrescriptionRead:
    """Prescribe (409 allergy_conflict unless override_reason is given)."""
    result = await service.prescribe(conn=conn, actor=actor, patient_id=patient_id, data=data)
    return _prescription(result)


@router.get("/prescriptions")
async def list_prescriptions(
    patient_id: uuid.UUID, actor: Reader, conn: ConnDep, limit: Limit = 100, offset: Offset = 0
) -> list[PrescriptionRead]:
    """Prescriptions, newest first."""
    rows = await service.list_prescriptions(
        conn=conn, actor=actor, patient_id=patient_id, limit=limit, offset=offset
    )
    return [_prescription(r) for r in rows]


@router.get("/prescriptions/{prescription_id}")
async def get_prescription(
    patient_id: uuid.UUID, prescription_id: uuid.UUID, actor: Reader, conn: ConnDep, response: Response
) -> PrescriptionRead:
    """One prescription with its allergy overrides (its ETag is its version)."""
    result = await service.get_prescription(
        conn=conn, actor=actor, patient_id=patient_id, prescription_id=prescription_id
    )
    _tagged(response, result.prescription)
    return _prescription(result)


@router.patch("/prescriptions/{prescription_id}")
async def update_prescription(
    patient_id: uuid.UUID,
    prescription_id: uuid.UUID,
    data: PrescriptionUpdate,
    actor: Prescriber,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> PrescriptionRead:
    """Change a prescription's status (412 on a stale If-Match)."""
    result = await service.update_prescription(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        prescription_id=prescription_id,
        data=data,
        expected_version=if_match_version(if_match, required=False),
    )
    _tagged(response, result.prescription)
    return _prescription(result)


# ---------------------------------------------------------------- labs


@router.post("/lab-orders", status_code=201)
async def order_lab(
    patient_id: uuid.UUID, data: LabOrderCreate, actor: Writer, conn: ConnDep
) -> LabOrderRead:
    """Order a lab test (LOINC)."""
    row = await service.order_lab(conn=conn, actor=actor, patient_id=patient_id, data=data)
    return LabOrderRead.model_validate(row)


@router.get("/lab-orders")
async def list_labs(
    patient_id: uuid.UUID, actor: Reader, conn: ConnDep, limit: Limit = 100, offset: Offset = 0
) -> list[LabOrderRead]:
    """Lab orders, newest first."""
    rows = await service.list_labs(conn=conn, actor=actor, patient_id=patient_id, limit=limit, offset=offset)
    return [LabOrderRead.model_validate(r) for r in rows]


@router.get("/lab-orders/{order_id}")
async def get_lab(
    patient_id: uuid.UUID, order_id: uuid.UUID, actor: Reader, conn: ConnDep, response: Response
) -> LabOrderRead:
    """One lab order (its ETag is its version)."""
    row = await service.get_lab(conn=conn, actor=actor, patient_id=patient_id, order_id=order_id)
    _tagged(response, row)
    return LabOrderRead.model_validate(row)


@router.post("/lab-orders/{order_id}/collect")
async def collect_lab(
    patient_id: uuid.UUID,
    order_id: uuid.UUID,
    actor: Writer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> LabOrderRead:
    """Mark the specimen collected (412 on a stale If-Match)."""
    row = await service.collect_lab(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        order_id=order_id,
        expected_version=if_match_version(if_match, required=False),
    )
    _tagged(response, row)
    return LabOrderRead.model_validate(row)


@router.post("/lab-orders/{order_id}/result")
async def result_lab(
    patient_id: uuid.UUID,
    order_id: uuid.UUID,
    data: LabResultCreate,
    actor: Writer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> LabOrderRead:
    """Record the result (abnormal flag computed from the reference range; 412 on a stale If-Match)."""
    row = await service.result_lab(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        order_id=order_id,
        data=data,
        expected_version=if_match_version(if_match, required=False),
    )
    _tagged(response, row)
    return LabOrderRead.model_validate(row)


@router.post("/lab-orders/{order_id}/cancel")
async def cancel_lab(
    patient_id: uuid.UUID,
    order_id: uuid.UUID,
    actor: Writer,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> LabOrderRead:
    """Cancel an order without a result (412 on a stale If-Match)."""
    row = await service.cancel_lab(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        order_id=order_id,
        expected_version=if_match_version(if_match, required=False),
    )
    _tagged(response, row)
    return LabOrderRead.model_validate(row)
