"""Bulk Data $export (system, Patient, Group): async kick-off, status polling, NDJSON files.

The kick-off records a `FhirExportJob` row and defers the arq job ``fhir_export`` (sent after the
kick-off commits); `hims worker` runs it, so an export survives web replicas being restarted or
load-balanced, and status polling works from any replica (it reads the job row). Without a job
queue (no REDIS_URL: the single-process development mode) the export runs as an asyncio task in
the web process instead, and says so in the log.

Worker death: a worker stopped by SIGTERM cancels the attempt and arq re-queues it at once; a
worker killed outright leaves the attempt "in progress" in Redis until arq's in-progress key
expires (the attempt timeout + 10 s), then another worker retries it. Every attempt starts by
deleting the job's files, so retrying is safe. After `MAX_TRIES` attempts the job is marked
failed; a job nobody finishes (no worker, lost queue, restarted in-process fallback) is reported
failed by `$export-status` once it is older than `STALE_AFTER`.

Cancel marks the row; the running attempt checks the row between batches and before the
manifest, stops and deletes its files, and a queued attempt ends as soon as it starts.

Files go to HIMS_DATA_DIR/files/exports/<job>/<Type>.ndjson (a volume shared by the web and
worker processes) and are served only to authenticated callers.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime, timedelta
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
from hims.core.jobs import defer
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

#: The arq job name `hims worker` registers `export_job` under.
JOB_NAME = "fhir_export"
#: One attempt may run this long before it is stopped and the job marked failed.
ATTEMPT_TIMEOUT = timedelta(hours=2)
#: Attempts (the first run plus retries after a worker died) before the job is marked failed.
MAX_TRIES = 3
#: A job not started this long after the kick-off is not started any more (arq drops it).
START_DEADLINE = timedelta(hours=12)
#: `$export-status` reports a queued/running job older than this as failed (its runner is gone).
STALE_AFTER = START_DEADLINE + ATTEMPT_TIMEOUT + timedelta(minutes=5)

_FINAL = ("complete", "error", "cancelled")


class _Stopped(Exception):
    """The job row left "running" (cancelled, or failed by the staleness rule) mid-export."""


def export_root(settings: Settings) -> Path:
    """Where export files live."""
    return Path(settings.hims_data_dir) / "files" / "exports"


def arq_job_id(job_id: str) -> str:
    """The arq job id of an export: one queue entry per export, reused by retries."""
    return f"{JOB_NAME}:{job_id}"


def actor_to_job(actor: Actor) -> dict[str, Any]:
    """The requester as plain data for the job payload (audit rows name who asked)."""
    return {
        "user_id": str(actor.user_id) if actor.user_id else None,
        "username": actor.username,
        "roles": sorted(actor.roles),
        "permissions": sorted(actor.permissions),
        "client_ip": actor.client_ip,
        "request_id": actor.request_id,
        "channel": actor.channel,
        "token_id": actor.token_id,
        "practitioner_id": str(actor.practitioner_id) if actor.practitioner_id else None,
    }


def actor_from_job(data: dict[str, Any]) -> Actor:
    """The inverse of `actor_to_job`."""
    return Actor(
        user_id=uuid.UUID(data["user_id"]) if data.get("user_id") else None,
        username=data["username"],
        roles=frozenset(data.get("roles", [])),
        permissions=frozenset(data.get("permissions", [])),
        client_ip=data.get("client_ip"),
        request_id=data.get("request_id"),
        channel=data.get("channel", "fhir"),
        token_id=data.get("token_id"),
        practitioner_id=uuid.UUID(data["practitioner_id"]) if data.get("practitioner_id") else None,
    )


async def kick_off(
    *,
    request: Request,
    session: AsyncSession,
    actor: Actor,
    settings: Settings,
    level: str,
    group_id: str | None,
) -> Response:
    """Validate the request, record the job, queue it (after commit), answer 202 + Content-Location."""
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
    if db.queue is not None:
        defer(
            session,
            JOB_NAME,
            job_id=job.id,
            actor=actor_to_job(actor),
            _job_id=arq_job_id(job.id),
            _expires=START_DEADLINE,
        )
    else:
        _start_in_process(request, db, settings, job.id, actor)
    base = str(request.base_url).rstrip("/") + "/fhir/R4"
    return Response(status_code=202, headers={"Content-Location": f"{base}/$export-status/{job.id}"})


def _start_in_process(request: Request, db: Database, settings: Settings, job_id: str, actor: Actor) -> None:
    """No job queue (no REDIS_URL): run the export as a task of this web process."""
    log.warning(
        "fhir_export_in_process",
        job_id=job_id,
        detail="no job queue (REDIS_URL unset): the export runs in this web process and is lost "
        "if it stops; set REDIS_URL and run `hims worker` for several replicas",
    )
    tasks: set[asyncio.Task[None]] = getattr(request.app.state, "fhir_export_tasks", set())
    request.app.state.fhir_export_tasks = tasks
    task = asyncio.create_task(_run_after_commit(db, settings, job_id, actor))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _run_after_commit(db: Database, settings: Settings, job_id: str, actor: Actor) -> None:
    # The kick-off's transaction commits just after the handler returns; wait until the job is visible.
    for _ in range(100):
        async with db.transaction() as session:
            if await session.get(FhirExportJob, job_id) is not None:
                break
        await asyncio.sleep(0.05)
    await run_guarded(db=db, settings=settings, job_id=job_id, actor=actor)


async def export_job(ctx: dict[str, Any], *, job_id: str, actor: dict[str, Any]) -> str:
    """The arq job `hims worker` runs for a kick-off; returns the job's final status.

    A retry (``job_try`` > 1) follows a worker that died or was stopped mid-attempt; after
    `MAX_TRIES` attempts the job is marked failed instead of being tried again.
    """
    db: Database = ctx["db"]
    settings: Settings = ctx["settings"]
    job_try = int(ctx.get("job_try", 1))
    if job_try > 1:
        log.warning("fhir_export_retry", job_id=job_id, job_try=job_try)
    if job_try > MAX_TRIES:
        await _fail(db, settings, job_id, f"The export was interrupted {MAX_TRIES} times (worker lost).")
        return await _status_of(db, job_id)
    return await run_guarded(db=db, settings=settings, job_id=job_id, actor=actor_from_job(actor))


async def run_guarded(*, db: Database, settings: Settings, job_id: str, actor: Actor) -> str:
    """`run_export` within `ATTEMPT_TIMEOUT`; an error marks the job failed (not retried).

    Cancellation (worker shutdown) propagates so arq re-queues the attempt.
    """
    deadline = asyncio.timeout(ATTEMPT_TIMEOUT.total_seconds())
    try:
        async with deadline:
            return await run_export(db=db, settings=settings, job_id=job_id, actor=actor)
    except Exception as exc:
        if isinstance(exc, TimeoutError) and deadline.expired():
            log.error("export_timed_out", job_id=job_id)
            await _fail(db, settings, job_id, f"The export took longer than {ATTEMPT_TIMEOUT}.")
        else:
            log.error("export_failed", job_id=job_id, error=type(exc).__name__)
            await _fail(db, settings, job_id, type(exc).__name__)
    return "error"


async def _fail(db: Database, settings: Settings, job_id: str, error: str) -> None:
    """Mark an unfinished job failed and delete its partial files.

    A job already final keeps its status, and a complete one its files (a retry can follow a
    worker that died after the manifest was committed).
    """
    async with db.transaction() as session:
        job = await session.get(FhirExportJob, job_id, with_for_update=True)
        if job is None or job.status == "complete":
            return
        if job.status not in _FINAL:
            job.status, job.error, job.finished_at = "error", error, datetime.now(UTC)
    shutil.rmtree(export_root(settings) / job_id, ignore_errors=True)


async def _check_running(db: Database, job_id: str, progress: str | None = None) -> None:
    """Raise `_Stopped` unless the job is still "running" (a cancel is seen here); record progress."""
    async with db.transaction() as session:
        current = await session.get(FhirExportJob, job_id)
        if current is None or current.status != "running":
            raise _Stopped
        if progress is not None:
            current.progress = progress


async def run_export(*, db: Database, settings: Settings, job_id: str, actor: Actor) -> str:
    """Write the NDJSON files of a job and its manifest (the job reads in one snapshot).

    Idempotent: an attempt first deletes whatever an interrupted attempt left, then rewrites every
    file. Returns the job's status afterwards ("complete", or why nothing was written).
    """
    async with db.transaction() as session:
        job = await session.get(FhirExportJob, job_id, with_for_update=True)
        if job is None:
            return "missing"
        if job.status in _FINAL:
            return job.status
        if job.created_at < datetime.now(UTC) - START_DEADLINE:
            job.status, job.finished_at = "error", datetime.now(UTC)
            job.error = f"The export was not started within {START_DEADLINE}."
            return "error"
        job.status, job.progress = "running", None
    out_dir = export_root(settings) / job_id
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        outputs, transaction_time = await _write_files(db, job_id, job.params, out_dir, actor)
    except _Stopped:
        shutil.rmtree(out_dir, ignore_errors=True)
        log.info("export_stopped", job_id=job_id)
        return await _status_of(db, job_id)
    async with db.transaction() as session:
        job = await session.get(FhirExportJob, job_id, with_for_update=True)
        if job is None or job.status != "running":
            shutil.rmtree(out_dir, ignore_errors=True)
            return job.status if job is not None else "missing"
        job.status = "complete"
        job.finished_at = datetime.now(UTC)
        job.manifest = {
            "transactionTime": iso(transaction_time),
            "request": job.request_url,
            "requiresAccessToken": True,
            "output": outputs,
            "error": [],
        }
    log.info("export_complete", job_id=job_id, files=len(outputs))
    return "complete"


async def _status_of(db: Database, job_id: str) -> str:
    async with db.transaction() as session:
        job = await session.get(FhirExportJob, job_id)
        return job.status if job is not None else "missing"


async def _write_files(
    db: Database, job_id: str, params: dict[str, Any], out_dir: Path, actor: Actor
) -> tuple[list[dict[str, Any]], datetime]:
    """One NDJSON file per type with rows, all read in one REPEATABLE READ snapshot."""
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
        for done, rtype in enumerate(types):
            audited: set[str] = set()
            await _check_running(db, job_id)
            out_dir.mkdir(parents=True, exist_ok=True)
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
                    if len(rows) == BATCH:
                        await _check_running(db, job_id)
            if count:
                outputs.append({"type": rtype, "url": f"{rtype}.ndjson", "count": count})
                # Whose data the file holds: each download of it is logged for these patients.
                _patients_file(path).write_text("".join(f"{p}\n" for p in sorted(audited)), encoding="utf-8")
            else:
                path.unlink()
            # One log row per patient whose resources of this type the export wrote.
            await service.audit(conn, actor, "export", rtype, [(p, None) for p in sorted(audited)])
            await _check_running(db, job_id, progress=f"{done + 1}/{len(types)} types")
    return outputs, transaction_time


def _patients_file(ndjson: Path) -> Path:
    """The list of patients (``Patient/<id>`` lines) an output file holds data of."""
    return ndjson.with_suffix(".patients")


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
    """The job; one still queued or running after `STALE_AFTER` is reported failed (its runner is
    gone: no attempt can start after `START_DEADLINE` nor run longer than `ATTEMPT_TIMEOUT`)."""
    job = await _job(session, actor, job_id)
    if job.status not in _FINAL and job.created_at < datetime.now(UTC) - STALE_AFTER:
        log.error("export_stale", job_id=job_id, status=job.status)
        job.status, job.finished_at = "error", datetime.now(UTC)
        job.error = f"The export did not finish within {STALE_AFTER} (no worker ran it to the end)."
    return job


async def cancel(*, session: AsyncSession, actor: Actor, job_id: str, settings: Settings) -> None:
    """Mark the job cancelled and remove its files; a running attempt stops at its next check."""
    job = await _job(session, actor, job_id)
    job.status = "cancelled"
    shutil.rmtree(export_root(settings) / job_id, ignore_errors=True)


async def file_path(
    *, session: AsyncSession, actor: Actor, job_id: str, name: str, settings: Settings
) -> Path:
    """The path of one output file of a complete job (names come from the manifest only)."""
    job = await _job(session, actor, job_id)
    outputs = {o["url"]: o["type"] for o in (job.manifest or {}).get("output", [])}
    if job.status != "complete" or name not in outputs:
        raise NotFound("No such export file.", code="export_file_not_found")
    path = export_root(settings) / job_id / name
    listed = _patients_file(path)
    patients = listed.read_text(encoding="utf-8").split() if listed.exists() else []
    # Each download discloses the file again: logged for every patient in it, in this transaction.
    conn = await repo.connection(session)
    await service.audit(conn, actor, "export_download", outputs[name], [(p, None) for p in patients])
    return path
