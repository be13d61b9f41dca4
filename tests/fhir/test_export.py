"""Bulk Data $export: kick-off, status polling, manifest, authenticated NDJSON download.

With a job queue (REDIS_URL, as in these tests) the export runs in the arq worker: an arq
`Worker` with the `hims worker` configuration runs in-process against the real Redis queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from arq.worker import Worker
from fastapi import FastAPI
from httpx import AsyncClient

from hims.core.db import Database
from hims.core.jobs import QUEUE_NAME
from hims.core.security import Actor
from hims.fhir import export
from hims.fhir.models import FhirExportJob
from hims.ops.worker import HimsWorker, worker_settings
from hims.settings import Settings
from tests.conftest import make_settings, serve_in_process
from tests.fhir.conftest import FHIR_JSON, auth, create, patient
from tests.support import phi_rows


@asynccontextmanager
async def running_worker(settings: Settings, database_url: str) -> AsyncIterator[Worker]:
    """An arq worker configured like `hims worker`, polling the real Redis queue in-process."""
    options = worker_settings(settings, database_url)
    options.update(handle_signals=False, poll_delay=0.05)
    worker = HimsWorker(**options)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        # Like SIGTERM: running jobs are cancelled (arq re-queues them), then on_shutdown runs.
        await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def arq_pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    """A client of the job queue, to wait for a job's result."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE_NAME)
    try:
        yield pool
    finally:
        await pool.aclose()


async def _wait_manifest(fhir: AsyncClient, status_url: str) -> dict[str, Any]:
    for _ in range(500):
        response = await fhir.get(status_url)
        if response.status_code == 200:
            manifest: dict[str, Any] = response.json()
            return manifest
        assert response.status_code == 202, response.text
        assert "X-Progress" in response.headers
        await asyncio.sleep(0.02)
    raise AssertionError("export did not finish")


async def _wait_progress(fhir: AsyncClient, status_url: str, progress: str) -> None:
    for _ in range(500):
        response = await fhir.get(status_url)
        assert response.status_code == 202, response.text
        if response.headers["X-Progress"] == progress:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"export never reported {progress!r}")


async def _kick(fhir: AsyncClient, path: str = "/$export", **params: str) -> tuple[str, str]:
    """Kick off an export; (status path, job id)."""
    kick = await fhir.get(path, params=params, headers={"Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["content-location"].split("/fhir/R4", 1)[1]
    return status_url, status_url.rsplit("/", 1)[1]


async def _arq_result(pool: ArqRedis, job_id: str) -> Any:
    return await Job(export.arq_job_id(job_id), pool, _queue_name=QUEUE_NAME).result(
        timeout=30, poll_delay=0.05
    )


async def _some_resources(fhir: AsyncClient) -> dict[str, Any]:
    p = await create(fhir, patient())
    await create(
        fhir,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{p['id']}"},
        },
    )
    await create(fhir, {"resourceType": "Organization", "name": "Clinic"})
    return p


@asynccontextmanager
async def fhir_resources_locked(database_url: str) -> AsyncIterator[None]:
    """Hold an exclusive lock on fhir_resources: an export reaching its first read waits here."""
    conn = await asyncpg.connect(database_url)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("LOCK TABLE fhir_resources IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        await tx.rollback()
        await conn.close()


async def test_worker_runs_system_patient_and_group_exports(
    fhir: AsyncClient, app: FastAPI, settings: Settings, database_url: str, arq_pool: ArqRedis
) -> None:
    p = await _some_resources(fhir)
    needs_async = await fhir.get("/$export")
    assert needs_async.status_code == 400
    async with running_worker(settings, database_url):
        status_url, job_id = await _kick(fhir)
        assert await _arq_result(arq_pool, job_id) == "complete"  # the worker ran it
        manifest = await _wait_manifest(fhir, status_url)
        assert manifest["requiresAccessToken"] is True
        assert {o["type"]: o["count"] for o in manifest["output"]} == {
            "Observation": 1,
            "Organization": 1,
            "Patient": 1,
        }
        files = sorted(p.name for p in (export.export_root(settings) / job_id).glob("*.ndjson"))
        assert files == ["Observation.ndjson", "Organization.ndjson", "Patient.ndjson"]
        # The job logged, per type, the patients whose data it wrote (the Organization is nobody's).
        exported = await phi_rows(database_url, action="export")
        assert sorted((r["resource_type"], str(r["patient_id"])) for r in exported) == [
            ("Observation", p["id"]),
            ("Patient", p["id"]),
        ]
        url = next(o["url"] for o in manifest["output"] if o["type"] == "Patient").split("/fhir/R4", 1)[1]
        download = await fhir.get(url)
        assert download.status_code == 200
        # Each download discloses the file again.
        downloaded = await phi_rows(database_url, action="export_download")
        assert [(r["resource_type"], str(r["patient_id"])) for r in downloaded] == [("Patient", p["id"])]
        lines = download.content.decode().strip().split("\n")
        assert orjson.loads(lines[0])["id"] == p["id"]
        anonymous = await fhir.get(url, headers={"Authorization": ""})
        assert anonymous.status_code == 401

        # _type
        status_url, _ = await _kick(fhir, "/Patient/$export", _type="Patient,Observation")
        manifest = await _wait_manifest(fhir, status_url)
        assert sorted(o["type"] for o in manifest["output"]) == ["Observation", "Patient"]

        # Group members and _since: a past _since keeps everything, a future one nothing.
        group = await create(
            fhir,
            {
                "resourceType": "Group",
                "type": "person",
                "actual": True,
                "member": [{"entity": {"reference": f"Patient/{p['id']}"}}],
            },
        )
        status_url, _ = await _kick(fhir, f"/Group/{group['id']}/$export", _since="2000-01-01")
        manifest = await _wait_manifest(fhir, status_url)
        assert sorted(o["type"] for o in manifest["output"]) == ["Observation", "Patient"]
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        status_url, _ = await _kick(fhir, "/$export", _since=tomorrow)
        assert (await _wait_manifest(fhir, status_url))["output"] == []
    # Nothing ran in the web process.
    assert not getattr(app.state, "fhir_export_tasks", set())
    bad = await fhir.get("/$export", params={"_type": "Nope"}, headers={"Prefer": "respond-async"})
    assert bad.status_code == 400


async def test_kick_off_only_queues_the_job(fhir: AsyncClient, settings: Settings) -> None:
    await _some_resources(fhir)
    status_url, job_id = await _kick(fhir)
    # No worker: the job waits in the queue, the web process does not run it.
    await asyncio.sleep(0.3)
    response = await fhir.get(status_url)
    assert response.status_code == 202
    assert response.headers["X-Progress"] == "queued"
    assert not (export.export_root(settings) / job_id).exists()


async def test_cancel_a_queued_export(
    fhir: AsyncClient, settings: Settings, database_url: str, arq_pool: ArqRedis
) -> None:
    await _some_resources(fhir)
    status_url, job_id = await _kick(fhir)
    assert (await fhir.delete(status_url)).status_code == 202
    async with running_worker(settings, database_url):
        assert await _arq_result(arq_pool, job_id) == "cancelled"
    assert (await fhir.get(status_url)).status_code == 410
    assert not (export.export_root(settings) / job_id).exists()


async def test_cancel_a_running_export(
    fhir: AsyncClient, settings: Settings, database_url: str, arq_pool: ArqRedis
) -> None:
    await _some_resources(fhir)
    async with running_worker(settings, database_url):
        async with fhir_resources_locked(database_url):
            status_url, job_id = await _kick(fhir)
            await _wait_progress(fhir, status_url, "running")  # the worker holds it, blocked on the lock
            assert (await fhir.delete(status_url)).status_code == 202
        assert await _arq_result(arq_pool, job_id) == "cancelled"
    assert (await fhir.get(status_url)).status_code == 410
    assert not (export.export_root(settings) / job_id).exists()


async def test_export_interrupted_by_a_stopping_worker_is_retried(
    fhir: AsyncClient, settings: Settings, database_url: str, arq_pool: ArqRedis
) -> None:
    await _some_resources(fhir)
    async with fhir_resources_locked(database_url):
        async with running_worker(settings, database_url):
            status_url, job_id = await _kick(fhir)
            await _wait_progress(fhir, status_url, "running")
            # A partial file of the interrupted attempt, which the retry must replace.
            out = export.export_root(settings) / job_id
            out.mkdir(parents=True, exist_ok=True)
            (out / "Patient.ndjson").write_text("half a line")
        # The worker stopped mid-export (as on SIGTERM during a deploy): still in progress.
        assert (await fhir.get(status_url)).status_code == 202
    async with running_worker(settings, database_url):
        assert await _arq_result(arq_pool, job_id) == "complete"
        info = await Job(export.arq_job_id(job_id), arq_pool, _queue_name=QUEUE_NAME).result_info()
        assert info is not None
        assert info.job_try == 2
        manifest = await _wait_manifest(fhir, status_url)
    assert {o["type"]: o["count"] for o in manifest["output"]} == {
        "Observation": 1,
        "Organization": 1,
        "Patient": 1,
    }
    line = (export.export_root(settings) / job_id / "Patient.ndjson").read_text().strip()
    assert orjson.loads(line)["resourceType"] == "Patient"


async def _job_row(db: Database, *, status: str, created_at: datetime) -> str:
    job_id = f"job-{status}-{created_at.timestamp():.0f}"
    async with db.transaction() as session:
        session.add(
            FhirExportJob(
                id=job_id,
                user_id=None,
                status=status,
                request_url="http://t/fhir/R4/$export",
                params={"level": "system", "group": None, "types": [], "since": None},
                created_at=created_at,
            )
        )
    return job_id


async def _row_status(db: Database, job_id: str) -> tuple[str, str | None]:
    async with db.transaction() as session:
        job = await session.get(FhirExportJob, job_id)
        assert job is not None
        return job.status, job.error


async def test_a_job_that_keeps_losing_its_worker_fails(db: Database, settings: Settings) -> None:
    job_id = await _job_row(db, status="running", created_at=datetime.now(UTC))
    ctx = {"db": db, "settings": settings, "job_try": export.MAX_TRIES + 1}
    actor = export.actor_to_job(Actor.system("test"))
    assert await export.export_job(ctx, job_id=job_id, actor=actor) == "error"
    status, error = await _row_status(db, job_id)
    assert status == "error"
    assert error is not None
    assert "worker lost" in error
    # A retry after a worker died just after committing the manifest keeps the export.
    done = await _job_row(db, status="complete", created_at=datetime.now(UTC) - timedelta(hours=1))
    (export.export_root(settings) / done).mkdir(parents=True)
    (export.export_root(settings) / done / "Patient.ndjson").write_text("{}\n")
    assert await export.export_job(ctx, job_id=done, actor=actor) == "complete"
    assert (export.export_root(settings) / done / "Patient.ndjson").exists()


async def test_a_job_nobody_finishes_is_reported_failed(
    fhir: AsyncClient, db: Database, settings: Settings
) -> None:
    old = datetime.now(UTC) - export.STALE_AFTER - timedelta(minutes=1)
    job_id = await _job_row(db, status="running", created_at=old)
    response = await fhir.get(f"/$export-status/{job_id}")
    assert response.status_code == 400
    assert "did not finish" in response.text
    # A late attempt (arq would drop it: START_DEADLINE) does not start either.
    late = await _job_row(db, status="queued", created_at=datetime.now(UTC) - export.START_DEADLINE * 2)
    actor = export.actor_to_job(Actor.system("test"))
    ctx = {"db": db, "settings": settings, "job_try": 1}
    assert await export.export_job(ctx, job_id=late, actor=actor) == "error"
    assert (await _row_status(db, late))[0] == "error"
    assert not (export.export_root(settings) / late).exists()


async def test_without_a_job_queue_the_export_runs_in_process(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, None, hims_data_dir=tmp_path)
    async with serve_in_process(settings) as http:
        headers = {**auth(settings, "physician", "operator"), "Content-Type": FHIR_JSON}
        http.headers.update(headers)
        http.base_url = "http://testserver/fhir/R4"  # type: ignore[assignment]
        await _some_resources(http)
        status_url, job_id = await _kick(http, "/$export", _type="Patient")
        manifest = await _wait_manifest(http, status_url)
        assert [o["type"] for o in manifest["output"]] == ["Patient"]
        assert (tmp_path / "files" / "exports" / job_id / "Patient.ndjson").exists()
        assert http.app.state.db.queue is None  # type: ignore[attr-defined]
