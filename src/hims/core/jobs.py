"""Background jobs queued during a transaction are sent only after it commits.

``defer(session, "job_name", **kwargs)`` records the job on the session; `Database.transaction`
callers that own a queue call `flush_deferred` after commit. A rolled-back transaction sends
nothing, so a worker never sees a job about data that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

_KEY = "hims_deferred_jobs"


def defer(session: AsyncSession, function: str, /, **kwargs: Any) -> None:
    """Queue ``function(**kwargs)`` to run after this session's transaction commits."""
    session.info.setdefault(_KEY, []).append((function, kwargs))


def take_deferred(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    """Remove and return the jobs recorded on ``session``."""
    jobs: list[tuple[str, dict[str, Any]]] = session.info.pop(_KEY, [])
    return jobs
