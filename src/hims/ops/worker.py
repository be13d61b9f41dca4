"""`hims worker`: the arq job queue on Redis, running the job functions domains register."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog
from arq.connections import RedisSettings
from arq.worker import Function, Worker, func

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


class HimsWorker(Worker):
    """arq's worker, whose shutdown survives a job cancelled as it finishes.

    On SIGTERM arq cancels the running jobs and then gathers them without ``return_exceptions``.
    A job caught in its shielded finish (its result already stored) re-raises CancelledError
    there, so the gather failed, ``on_shutdown`` never ran and the worker exited 1 (seen in CI).
    """

    async def close(self) -> None:
        for task in self.tasks.values():  # what arq's signal handler did already, or its close does
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()  # all done: arq's own gather below must not re-raise their cancellation
        await super().close()


def run(settings: Settings, url: str) -> None:
    """Run the worker until SIGINT/SIGTERM (running jobs are cancelled; arq re-queues them)."""
    from hims.core.logging import configure_logging

    configure_logging(settings.log_level)
    HimsWorker(**worker_settings(settings, url)).run()
