"""Database engines, sessions and the transaction boundary.

Services and repositories only flush; the boundary (a request, a CLI command, a job) owns the
transaction through `Database.transaction()`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry

from hims.core import jobs, metrics

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every table; one MetaData with a naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """Normalise a PostgreSQL URL to the asyncpg driver (accepts postgres:// and postgresql://).

    libpq's ``sslmode=require`` (the guide's own DATABASE_URL form) becomes asyncpg's ``ssl``,
    which takes the same values; passed through unchanged asyncpg rejects it.
    """
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            parsed = make_url("postgresql+asyncpg://" + url[len(prefix) :])
            if "sslmode" in parsed.query:
                query = dict(parsed.query)
                query["ssl"] = query.pop("sslmode")
                parsed = parsed.set(query=query)
            return parsed.render_as_string(hide_password=False)
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def make_engine(url: str, *, pool_size: int, idle_timeout_ms: int, role: str = "primary") -> AsyncEngine:
    """An engine with a bounded pool, pre-ping, and server-side idle timeout."""
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=10,
        pool_pre_ping=True,
        connect_args={
            "timeout": 5,
            "server_settings": {
                "application_name": "hims",
                # The guide's DATABASE_IDLE_TIMEOUT: the server closes pooled connections that sit
                # idle this long; pre-ping replaces them transparently.
                "idle_session_timeout": str(idle_timeout_ms),
            },
        },
    )
    _track_pool(engine, role, pool_size)
    return engine


def _track_pool(engine: AsyncEngine, role: str, size: int) -> None:
    metrics.DB_POOL_SIZE.labels(role).set(size)
    in_use = metrics.DB_POOL_IN_USE.labels(role)
    key = "hims_counted_in_use"

    # A checkout that fails its pre-ping (database gone) is checked in without a checkout
    # event; counting per connection record keeps the gauge from drifting during outages.
    def checkout(_dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        info = record.record_info
        if info is not None and not info.get(key):
            info[key] = True
            in_use.inc()

    def checkin(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        info = record.record_info if record is not None else None
        if info is not None and info.pop(key, False):
            in_use.dec()

    event.listen(engine.sync_engine.pool, "checkout", checkout)
    event.listen(engine.sync_engine.pool, "checkin", checkin)


#: Async functions run at the end of every `Database.transaction`, just before it commits, inside
#: it (e.g. the FHIR projection writing the FHIR versions of the domain rows the transaction changed).
BeforeCommit = Callable[[AsyncSession], Awaitable[None]]
BEFORE_COMMIT: list[BeforeCommit] = []


def register_before_commit(hook: BeforeCommit) -> BeforeCommit:
    """Add ``hook`` once (re-imports do not register twice)."""
    if hook not in BEFORE_COMMIT:
        BEFORE_COMMIT.append(hook)
    return hook


class Database:
    """The primary engine, optional read replicas, and session factories."""

    def __init__(
        self,
        url: str,
        *,
        read_urls: list[str] | None = None,
        pool_size: int = 20,
        idle_timeout_ms: int = 30000,
        queue: jobs.JobQueue | None = None,
    ) -> None:
        self.url = url
        #: Where jobs deferred inside `transaction()` go after commit (None: no queue).
        self.queue = queue
        self.engine = make_engine(url, pool_size=pool_size, idle_timeout_ms=idle_timeout_ms)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        replicas = [
            make_engine(u, pool_size=pool_size, idle_timeout_ms=idle_timeout_ms, role="replica")
            for u in (read_urls or [])
        ]
        self._replica_makers = [async_sessionmaker(e, expire_on_commit=False) for e in replicas]
        self._replicas = replicas
        self._next_replica = itertools.cycle(range(len(replicas))) if replicas else None

    @asynccontextmanager
    async def transaction(self, *, queue: jobs.JobQueue | None = None) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error.

        Jobs recorded with `hims.core.jobs.defer` are sent to ``queue`` (default: this Database's)
        only after the commit succeeded; on rollback they are dropped.
        """
        async with self.sessionmaker() as session:
            try:
                async with session.begin():
                    yield session
                    for hook in BEFORE_COMMIT:
                        await hook(session)
            except BaseException:
                jobs.take_deferred(session)
                raise
            deferred = jobs.take_deferred(session)
        await jobs.send(queue or self.queue, deferred)

    @asynccontextmanager
    async def read_transaction(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction on a replica when there is one (round-robin), else the primary.

        Still a transaction so PHI access log rows written during the read commit with it; those
        go to the primary, so reads that log PHI use `transaction()` instead.
        """
        if self._next_replica is None:
            async with self.transaction() as session:
                yield session
            return
        maker = self._replica_makers[next(self._next_replica)]
        async with maker() as session, session.begin():
            await session.execute(text("SET TRANSACTION READ ONLY"))
            yield session

    async def ping(self) -> None:
        """Round-trip to the primary; raises when it is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        for engine in self._replicas:
            await engine.dispose()
