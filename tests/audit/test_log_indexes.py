"""The PHI access log's time index is what time-bounded log reads use (planner, real rows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from hims.audit import repository
from hims.audit.repository import TimeRange

INDEX = "ix_phi_access_log_time"
ROWS = 30_000


class _Recorder:
    """Stands in for the asyncpg connection: keeps the SQL the repository would run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.calls.append((sql, args))
        return []

    async def fetchval(self, sql: str, *args: Any) -> int:
        self.calls.append((sql, args))
        return 0


@pytest.fixture
async def log_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection on a log of a year of accesses by many users about many patients, analysed."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO phi_access_log (occurred_at, user_id, username, patient_id, action, "
            "resource_type, resource_id, channel, outcome) "
            "SELECT now() - (n * interval '1 second' * (365 * 86400 / $1::int)), "
            "gen_random_uuid(), 'u' || (n % 300), gen_random_uuid(), 'read', 'Patient', "
            "'Patient/' || n, 'api', 'success' FROM generate_series(1, $1::int) AS n",
            ROWS,
        )
        await conn.execute("ANALYZE phi_access_log")
        yield conn
    finally:
        await conn.close()


async def _plan(conn: asyncpg.Connection, call: tuple[str, tuple[Any, ...]]) -> str:
    sql, args = call
    rows = await conn.fetch("EXPLAIN " + sql, *args)
    return "\n".join(r[0] for r in rows)


async def test_the_model_and_the_database_have_the_time_index(log_conn: asyncpg.Connection) -> None:
    definition = await log_conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", INDEX)
    assert definition is not None
    assert "(occurred_at, id)" in definition
    assert await log_conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", INDEX
    )


async def test_time_bounded_and_unfiltered_log_reads_use_it(log_conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    one_day = [[("occurred", TimeRange(now - timedelta(days=101), now - timedelta(days=100)))]]
    recorder = _Recorder()
    # AuditEvent?date=…: a one-day window, newest first, one page.
    await repository.page(recorder, one_day, descending=True, after=None, limit=50)  # type: ignore[arg-type]
    # AuditEvent with no filter, the next page after a keyset cursor, oldest first (_sort=date).
    await repository.page(
        recorder,  # type: ignore[arg-type]
        [],
        descending=False,
        after=(now - timedelta(days=200), 12345),
        limit=50,
    )
    # _total=accurate over the window.
    await repository.count(recorder, one_day)  # type: ignore[arg-type]
    assert len(recorder.calls) == 3
    for call in recorder.calls[:2]:
        plan = await _plan(log_conn, call)
        assert INDEX in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Sort" not in plan, plan  # the index gives the (occurred_at, id) order
    plan = await _plan(log_conn, recorder.calls[2])
    assert INDEX in plan, plan
