"""`hims worker` runs queued jobs; jobs deferred in a transaction are sent only after commit."""

from __future__ import annotations

import asyncio

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import Job, JobStatus
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient

from hims.app import create_app
from hims.core.db import Database
from hims.core.deps import SessionDep
from hims.core.errors import Conflict
from hims.core.jobs import QUEUE_NAME, ArqQueue, defer
from hims.core.security import require_public
from hims.ops import worker as worker_module
from tests.support import Server, base_env, hims


class Boom(Exception):
    pass


@pytest.mark.slow
async def test_real_worker_runs_enqueued_and_committed_jobs(database_url, redis_url, tmp_path):
    env = base_env(tmp_path, DATABASE_URL=database_url, REDIS_URL=redis_url, HIMS_ENV="test")
    worker = Server(["worker"], env, tmp_path / "worker.log")
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE_NAME)
    queue = ArqQueue(redis_url)
    db = Database(database_url, pool_size=2, queue=queue)
    try:
        job = await pool.enqueue_job("ping", _queue_name=QUEUE_NAME)
        assert job is not None
        assert await job.result(timeout=20, poll_delay=0.05) == "pong"

        async with db.transaction() as session:
            defer(session, "ping", _job_id="after-commit")
        committed = Job("after-commit", pool, _queue_name=QUEUE_NAME)
        assert await committed.result(timeout=10, poll_delay=0.05) == "pong"
    finally:
        await db.dispose()
        await queue.close()
        await pool.aclose()
        status = worker.stop()
        assert status == 0, worker.log()[-3000:]
    assert '"event": "worker_started"' in worker.log()


async def test_deferred_job_is_sent_only_after_commit(database_url, redis_url):
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE_NAME)
    queue = ArqQueue(redis_url)
    db = Database(database_url, pool_size=2, queue=queue)
    try:
        async with db.transaction() as session:
            defer(session, "ping", _job_id="job-1")
            # Inside the transaction nothing has been sent yet.
            assert await pool.queued_jobs(queue_name=QUEUE_NAME) == []
        queued = await pool.queued_jobs(queue_name=QUEUE_NAME)
        assert [(j.function, j.job_id) for j in queued] == [("ping", "job-1")]
    finally:
        await db.dispose()
        await queue.close()
        await pool.aclose()


async def test_rolled_back_transaction_sends_nothing(database_url, redis_url):
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE_NAME)
    queue = ArqQueue(redis_url)
    db = Database(database_url, pool_size=2, queue=queue)
    try:

        async def failing_command() -> None:
            async with db.transaction() as session:
                defer(session, "ping", _job_id="job-2")
                raise Boom

        with pytest.raises(Boom):
            await failing_command()
        assert await pool.queued_jobs(queue_name=QUEUE_NAME) == []
        assert await Job("job-2", pool, _queue_name=QUEUE_NAME).status() == JobStatus.not_found
        # The next transaction on a fresh session does not inherit the dropped job.
        async with db.transaction():
            pass
        assert await pool.queued_jobs(queue_name=QUEUE_NAME) == []
    finally:
        await db.dispose()
        await queue.close()
        await pool.aclose()


def test_worker_without_redis_url_exits_2(database_url, tmp_path):
    result = hims("worker", env=base_env(tmp_path, DATABASE_URL=database_url))
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr


jobs_router = APIRouter(prefix="/api/v1/jobs-test", dependencies=[require_public()])


@jobs_router.post("/ok")
async def ok(session: SessionDep) -> dict[str, bool]:
    defer(session, "ping", _job_id="from-ok")
    return {"ok": True}


@jobs_router.post("/refused")
async def refused(session: SessionDep) -> None:
    defer(session, "ping", _job_id="from-refused")
    raise Conflict("no")


async def test_request_boundary_sends_jobs_only_for_committed_requests(settings):
    app = create_app(settings)
    app.include_router(jobs_router)
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url), default_queue_name=QUEUE_NAME)
    transport = ASGITransport(app=app, client=("127.0.0.1", 40000))
    try:
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=transport, base_url="http://t") as c,
        ):
            assert (await c.post("/api/v1/jobs-test/ok")).status_code == 200
            assert (await c.post("/api/v1/jobs-test/refused")).status_code == 409
        queued = await pool.queued_jobs(queue_name=QUEUE_NAME)
        assert [j.job_id for j in queued] == ["from-ok"]
    finally:
        await pool.aclose()


async def test_the_worker_shuts_down_cleanly_when_a_job_is_cancelled_as_it_finishes(redis_url):
    # arq cancels running jobs on SIGTERM; a job caught in its shielded finish re-raises the
    # cancellation when the shutdown gathers it. The shutdown must still run to its end.
    stopped: list[bool] = []

    async def on_shutdown(_ctx: dict[str, object]) -> None:
        stopped.append(True)

    worker = worker_module.HimsWorker(
        functions=worker_module.functions(),
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name="hims:test-shutdown",
        on_shutdown=on_shutdown,
        handle_signals=False,
    )
    worker._pool = await create_pool(RedisSettings.from_dsn(redis_url))
    finishing = asyncio.ensure_future(asyncio.sleep(60))
    worker.tasks["job-finishing"] = finishing
    await worker.close()
    assert finishing.cancelled()
    assert stopped == [True]
