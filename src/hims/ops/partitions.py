"""Consultation partitions for operators: `hims db partitions ensure`, and after `hims db migrate`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from hims.consultations import service as consultations
from hims.core.db import async_url


async def ensure(
    url: str, *, years_ahead: int = 2, from_year: int | None = None
) -> consultations.EnsureResult:
    """Create missing partitions in their own transaction (commits on success)."""
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await consultations.prepare_partitions(conn, years_ahead=years_ahead, from_year=from_year)
    finally:
        await engine.dispose()


async def after_migrate(url: str) -> str | None:
    """This year's and the next two years' partitions (what `hims db migrate` prints, if anything)."""
    result = await ensure(url)
    return f"created {', '.join(result.created)}" if result.created else None
