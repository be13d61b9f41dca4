"""`hims worker`: the arq job queue on Redis, running the job functions domains register."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from arq import run_worker
from arq.connections import RedisSettings
from arq.worker import Function, func

from hims.core.db import Database
from hims.core.jobs import QUEUE_NAME, ArqQueue
from hims.fhir import export
from hims.settings import Settings

log = structlog.get_logger("hims.worker")

Job = Callable[..., Awaitable[Any]]
#: Job functions by the name `hims.core.jobs.defer` uses; domains append theirs. Each receives
#: arq's ctx (``db``, ``settings``, ``job_try``) first. A value may be an `arq.worker.func(...)`
#: carrying its own timeout and max_tries.
JOBS: dict[str, Job | Function] = {}
__all__ = ["JOBS", "QUEUE_NAME", "run"]


async def ping(ctx: dict[str, Any]) -> str:
    """A no-op job used by health checks and tests to prove the queue round-trips."""
    db: Database = ctx["db"]
    await db.ping()
    return "pong"


JOBS["ping"] = ping
# Bulk Data $export: long (its own timeout), retried after a worker died; the function marks the
# job failed itself on the try after export.MAX_TRIES, so arq must still call it then.
JOBS[export.JOB_NAME] = func(
    export.export_job,
    name=export.JOB_NAME,
    timeout=export.ATTEMPT_TIMEOUT.total_seconds() + 60,
    max_tries=export.MAX_TRIES + 1,
)


def functions() -> list[Function]:
    """`JOBS` as arq functions, each registered under its `JOBS` key."""
    return [
        job if isinstance(job, Function) else func(cast(Any, job), name=name) for name, job in JOBS.items()
    ]


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from REDIS_URL/REDIS_PASSWORD."""
    assert settings.redis_url is not None
    redis = RedisSettings.from_dsn(settings.redis_url)
    if settings.redis_password is not None:
        redis.password = settings.redis_password.get_secret_value()
    return redis


def worker_settings(settings: Settings, url: str) -> dict[str, Any]:
    """The arq worker configuration as keyword arguments."""

    async def startup(ctx: dict[str, Any]) -> None:
        # Jobs may defer further jobs; they go to the same Redis after the job's commit.
        ctx["db"] = Database(
            url,
            pool_size=min(settings.database_max_connections, 10),
            queue=ArqQueue(settings.redis_url or "", pool=ctx["redis"]),
        )
        ctx["settings"] = settings
        log.info("worker_started", jobs=sorted(JOBS))

    async def shutdown(ctx: dict[str, Any]) -> None:
        await ctx["db"].dispose()
        log.info("worker_stopped")

    return {
        "functions": functions(),
        "redis_settings": redis_settings(settings),
        "queue_name": QUEUE_NAME,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "max_jobs": 10,
        "job_timeout": 600,
        "handle_signals": True,
    }


def run(settings: Settings, url: str) -> None:
    """Run the worker until SIGINT/SIGTERM (running jobs are cancelled; arq re-queues them)."""
    from hims.core.logging import configure_logging

    configure_logging(settings.log_level)

    class WorkerSettings:
        pass

    for key, value in worker_settings(settings, url).items():
        setattr(WorkerSettings, key, value)
    run_worker(WorkerSettings)  # type: ignore[arg-type,unused-ignore]
