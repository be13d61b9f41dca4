"""Background jobs queued during a transaction are sent only after it commits.

``defer(session, "job_name", **kwargs)`` records the job on the session;
`Database.transaction()` sends the recorded jobs to its queue after the commit and drops them on
rollback, so a worker never sees a job about data that does not exist. The queue is arq on Redis
(`hims worker` runs it); without REDIS_URL there is no queue and deferred jobs are logged as not
sent.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

log = structlog.get_logger("hims.jobs")

#: The arq queue `hims worker` consumes.
QUEUE_NAME = "hims:jobs"
_KEY = "hims_deferred_jobs"


class JobQueue(Protocol):
    """Where committed jobs go."""

    async def enqueue(self, function: str, /, **kwargs: Any) -> None:
        """Send one job."""

    async def close(self) -> None:
        """Release connections."""


def defer(session: AsyncSession, function: str, /, **kwargs: Any) -> None:
    """Queue ``function(**kwargs)`` to run after this session's transaction commits."""
    session.info.setdefault(_KEY, []).append((function, kwargs))


def take_deferred(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    """Remove and return the jobs recorded on ``session``."""
    jobs: list[tuple[str, dict[str, Any]]] = session.info.pop(_KEY, [])
    return jobs


async def send(queue: JobQueue | None, jobs: list[tuple[str, dict[str, Any]]]) -> None:
    """Enqueue committed jobs; without a queue say loudly that they were not sent."""
    if not jobs:
        return
    if queue is None:
        log.error(
            "jobs_not_sent",
            jobs=[name for name, _ in jobs],
            detail="no job queue: set REDIS_URL and run `hims worker`",
        )
        return
    for function, kwargs in jobs:
        await queue.enqueue(function, **kwargs)


class ArqQueue:
    """`JobQueue` on arq/Redis; connects on first use so start-up never waits for Redis."""

    def __init__(self, redis_url: str, password: str | None = None, *, pool: Any = None) -> None:
        self._url = redis_url
        self._password = password
        self._pool: Any = pool
        self._owns_pool = pool is None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> Any:
        async with self._lock:
            if self._pool is None:
                from arq import create_pool
                from arq.connections import RedisSettings

                settings = RedisSettings.from_dsn(self._url)
                if self._password is not None:
                    settings.password = self._password
                self._pool = await create_pool(settings, default_queue_name=QUEUE_NAME)
            return self._pool

    async def enqueue(self, function: str, /, **kwargs: Any) -> None:
        pool = await self._get_pool()
        await pool.enqueue_job(function, _queue_name=QUEUE_NAME, **kwargs)
        log.info("job_enqueued", function=function)

    async def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            await self._pool.aclose()
        self._pool = None
