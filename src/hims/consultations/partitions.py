"""Yearly partitions of `consultations`: naming, creation ahead of time, and the verify check.

Partitions are created only by operators' commands (`hims db partitions ensure`, and after
every `hims db migrate`), never on the request path: DDL takes an ACCESS EXCLUSIVE lock on the
parent table, which would stall every consultation read behind it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

PARENT = "consultations"
_NAME = re.compile(r"^consultations_y(\d{4})$")


def partition_name(year: int) -> str:
    """The partition holding consultations started in ``year`` (UTC)."""
    return f"{PARENT}_y{year}"


def _create_sql(year: int) -> str:
    # Year is an int we produced ourselves; DDL cannot take bind parameters.
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(year)} PARTITION OF {PARENT} "
        f"FOR VALUES FROM ('{year}-01-01 00:00:00+00') TO ('{year + 1}-01-01 00:00:00+00')"
    )


_EXISTING = text(
    "SELECT c.relname FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
    "WHERE p.relname = :parent"
)


#: Partition DDL runs one session at a time (held until that session's transaction ends).
_SERIALISE = text("SELECT pg_advisory_xact_lock(hashtext('hims.consultations.partitions'))")


def _years(names: list[str]) -> set[int]:
    return {int(m.group(1)) for n in names if (m := _NAME.match(n))}


@dataclass
class EnsureResult:
    """What `ensure_partitions` found and created."""

    created: list[str]
    existing: list[str]


async def ensure_partitions(
    conn: AsyncConnection, *, years_ahead: int = 2, from_year: int | None = None, now: datetime | None = None
) -> EnsureResult:
    """Create the partitions from ``from_year`` (default this year) to this year + ``years_ahead``."""
    this_year = (now or datetime.now(UTC)).year
    first = min(from_year, this_year) if from_year is not None else this_year
    await conn.execute(_SERIALISE)
    existing = _years([r[0] for r in await conn.execute(_EXISTING, {"parent": PARENT})])
    created: list[str] = []
    for year in range(first, this_year + years_ahead + 1):
        if year not in existing:
            await conn.execute(text(_create_sql(year)))
            created.append(partition_name(year))
    return EnsureResult(created=created, existing=sorted(partition_name(y) for y in existing))


async def ensure_years(conn: AsyncConnection, years: set[int]) -> list[str]:
    """Create the partitions of exactly these years (e.g. the years of a historical data load);
    returns the ones created. Takes the parent's lock briefly per partition: operators' commands only.
    Concurrent callers (parallel imports) queue on an advisory lock, as `CREATE TABLE IF NOT EXISTS`
    alone is not safe against a second session creating the same partition at the same moment."""
    await conn.execute(_SERIALISE)
    existing = _years([r[0] for r in await conn.execute(_EXISTING, {"parent": PARENT})])
    created = []
    for year in sorted(years - existing):
        await conn.execute(text(_create_sql(year)))
        created.append(partition_name(year))
    return created


def missing_partitions(conn: Connection, *, now: datetime | None = None) -> list[str]:
    """`hims db verify` check: the current and next year's partitions must exist."""
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": PARENT}).scalar() is None:
        return []  # migrations not applied yet; verify reports that already
    this_year = (now or datetime.now(UTC)).year
    existing = _years([r[0] for r in conn.execute(_EXISTING, {"parent": PARENT})])
    return [
        f"partitions: {partition_name(y)} is missing; run `hims db partitions ensure`"
        for y in (this_year, this_year + 1)
        if y not in existing
    ]
