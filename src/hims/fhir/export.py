"""Bulk Data $export (system, Patient, Group): async kick-off, status polling, NDJSON files.

The export runs as an asyncio task in the app process that received the kick-off (simple and
enough for one replica; the job row makes status visible from any replica). Files go to
HIMS_DATA_DIR/files/exports/<job>/<Type>.ndjson and are served only to authenticated callers.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hims.core.db import Database
from hims.core.errors import BadRequest, NotFound
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir import service
from hims.fhir.extract import split_reference
from hims.fhir.models import FhirExportJob
from hims.fhir.registry import RESOURCE_TYPES
from hims.fhir.values import InvalidDate, date_range
from hims.fhir.versions import iso
from hims.settings import Settings

log = structlog.get_logger("hims.fhir.export")
BATCH = 2000


def export_root(settings: Settings) -> Path:
    """Where export files live."""
    return Path(settings.hims_data_dir) / "files" / "exports"


async def kick_off(
    *,
    request: Request,
    session: AsyncSession,
    actor: Actor,
    settings: Settings,
    level: str,
    group_id: str | None,
) -> Response:
    """Validate the request, record the job, start it, answer 202 + Content-Location."""
    if "respond-async" not in request.headers.get("prefer", ""):
        raise BadRequest("Bulk export needs the header `Prefer: respond-async`.", code="prefer_respond_async")
    fmt = request.query_params.get("_outputFormat")
    if fmt and fmt not in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        raise BadRequest(
            f"_outputFormat {fmt!r} is not supported; use application/fhir+ndjson.", code="invalid_format"
        )
    types = [t for t in request.query_params.get("_type", "").split(",") if t]
    unknown = [t for t in types if t not in RESOURCE_TYPES]
    if unknown:
        raise BadRequest(f"Unknown _type {', '.join(unknown)}.", code="unknown_resource_type")
    since = request.query_params.get("_since")
    if since:
        try:
            date_range(since)
        except InvalidDate:
            raise BadRequest(f"Invalid _since {since!r}.", code="invalid_date") from None
    if group_id is not None:
        await service.read(session=session, actor=actor, resource_type="Group", id_=group_id)
    job = FhirExportJob(
        id=service.new_id(),
        user_id=str(actor.user_id) if actor.user_id else None,
        status="queued",
        request_url=str(request.url),
        params={"level": level, "group": group_id, "types": types, "since": since},
        created_at=datetime.now(UTC),
    )
    session.add(job)
    await session.flush()
    db: Database = request.app.state.db
    tasks: set[asyncio.Task[None]] = getattr(request.app.state, "fhir_export_tasks", set())
    request.app.state.fhir_export_tasks = tasks
    task = asyncio.create_task(_run_after_commit(db, settings, job.id, actor))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    base = str(request.base_url).rstrip("/") + "/fhir/R4"
    return Response(status_code=202, headers={"Content-Location": f"{base}/$export-status/{job.id}"})


async def _run_after_commit(db: Database, settings: Settings, job_id: str, actor: Actor) -> None:
    # The kick-off's transaction commits just after the handler returns; wait until the job is visible.
    for _ in range(100):
        async with db.transaction() as session:
            if await session.get(FhirExportJob, job_id) is not None:
                break
        await asyncio.sleep(0.05)
    try:
        await run_export(db=db, settings=settings, job_id=job_id, actor=actor)
    except Exception as exc:
        log.error("export_failed", job_id=job_id, error=type(exc).__name__)
        async with db.transaction() as session:
            job = await session.get(FhirExportJob, job_id)
            if job is not None:
                job.status, job.error, job.finished_at = "error", type(exc).__name__, datetime.now(UTC)


async def run_export(*, db: Database, settings: Settings, job_id: str, actor: Actor) -> None:
    """Write the NDJSON files of a job and its manifest (the job reads in one snapshot)."""
    async with db.transaction() as session:
        job = await session.get(FhirExportJob, job_id)
        if job is None or job.status == "cancelled":
            return
        job.status = "running"
    out_dir = export_root(settings) / job_id
    out_dir.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = job.params
    since = date_range(params["since"])[0] if params.get("since") else None
    outputs: list[dict[str, Any]] = []
    transaction_time = datetime.now(UTC)
    async with db.transaction() as session:
        conn = await repo.connection(session)
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        patients: list[str] | None = None
        if params["level"] == "group":
            group = await repo.read(conn, "Group", params["group"])
            assert group is not None
            assert group.resource is not None
            members = orjson.loads(group.resource).get("member", [])
            patients = []
            for member in members:
                target = split_reference(str((member.get("entity") or {}).get("reference", "")))
                if target and target[0] == "Patient":
                    patients.append(target[1])
        types = params.get("types") or sorted(
            r["resource_type"] for r in await conn.fetch("SELECT DISTINCT resource_type FROM fhir_resources")
        )
        audited: set[str] = set()
        for done, rtype in enumerate(types):
            count = 0
            path = out_dir / f"{rtype}.ndjson"
            after = 0
            with path.open("w", encoding="utf-8") as handle:
                while True:
                    rows = await conn.fetch(
                        "SELECT rid, id, patient_ref, resource::text AS resource FROM fhir_resources "
                        "WHERE resource_type = $1 AND NOT deleted AND rid > $2 "
                        "AND ($3::timestamptz IS NULL OR last_updated >= $3) "
                        "AND ($4::text IS NULL OR patient_ref IS NOT NULL) "
                        "AND ($5::text[] IS NULL OR patient_ref = ANY($5)) ORDER BY rid LIMIT $6",
                        rtype,
                        after,
                        since,
                        "patient" if params["level"] in ("patient", "group") else None,
                        [f"Patient/{p}" for p in patients] if patients is not None else None,
                        BATCH,
                    )
                    if not rows:
                        break
                    for row in rows:
                        handle.write(row["resource"])
                        handle.write("\n")
                        if row["patient_ref"]:
                            audited.add(row["patient_ref"])
                    count += len(rows)
                    after = rows[-1]["rid"]
            if count:
                outputs.append({"type": rtype, "url": f"{rtype}.ndjson", "count": count})
            else:
                path.unlink()
            async with db.transaction() as progress_session:
                current = await progress_session.get(FhirExportJob, job_id)
                if current is not None:
                    current.progress = f"{done + 1}/{len(types)} types"
        await service.audit(session, actor, "export", "*", [(p, None) for p in sorted(audited)])
    async with db.transaction() as session:
        job = await session.get(FhirExportJob, job_id)
        if job is None or job.status == "cancelled":
            shutil.rmtree(out_dir, ignore_errors=True)
            return
        job.status = "complete"
        job.finished_at = datetime.now(UTC)
        job.manifest = {
            "transactionTime": iso(transaction_time),
            "request": job.request_url,
            "requiresAccessToken": True,
            "output": outputs,
            "error": [],
        }


async def _job(session: AsyncSession, actor: Actor, job_id: str) -> FhirExportJob:
    job = (
        await session.execute(select(FhirExportJob).where(FhirExportJob.id == job_id))
    ).scalar_one_or_none()
    if job is None or (
        job.user_id is not None and actor.user_id is not None and job.user_id != str(actor.user_id)
    ):
        raise NotFound("No such export job.", code="export_not_found")
    return job


async def status(*, session: AsyncSession, actor: Actor, job_id: str) -> FhirExportJob:
    """The job, with manifest URLs made absolute when complete."""
    return await _job(session, actor, job_id)


async def cancel(*, session: AsyncSession, actor: Actor, job_id: str, settings: Settings) -> None:
    """Mark the job cancelled and remove its files."""
    job = await _job(session, actor, job_id)
    job.status = "cancelled"
    shutil.rmtree(export_root(settings) / job_id, ignore_errors=True)


async def file_path(
    *, session: AsyncSession, actor: Actor, job_id: str, name: str, settings: Settings
) -> Path:
    """The path of one output file of a complete job (names come from the manifest only)."""
    job = await _job(session, actor, job_id)
    names = {o["url"] for o in (job.manifest or {}).get("output", [])}
    if job.status != "complete" or name not in names:
        raise NotFound("No such export file.", code="export_file_not_found")
    return export_root(settings) / job_id / name
