"""Database engines, sessions and the transaction boundary.

Services and repositories only flush; the boundary (a request, a CLI command, a job) owns the
transaction through `Database.transaction()`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from prometheus_client import Gauge
from sqlalchemy import MetaData, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util import queue as sqla_queue
from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import QueueCommon

from hims.core import jobs, metrics

T = TypeVar("T")

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


#: A pooled connection given back less than this many seconds ago is known to be alive and is
#: handed out without a ping; one idle for longer is pinged first (the server's
#: idle_session_timeout, a restart or a failover may have closed it). SQLAlchemy's pool_pre_ping
#: pinged on every checkout, which with asyncpg is three round trips (BEGIN, ";", ROLLBACK) per
#: request: about a tenth of a FHIR request's CPU under load.
PING_AFTER_IDLE_S = 1.0
_CHECKED_IN_AT = "hims_checked_in_at"
#: How long a request waits for a pooled connection before it answers 503.
POOL_TIMEOUT_S = 10.0


class FairQueue(QueueCommon[T]):
    """The pool's idle connections, handed to waiting requests strictly in the order they asked.

    A connection given back goes straight to the longest waiter. SQLAlchemy's own queue is an
    `asyncio.Queue`: a request arriving while the woken waiter has yet to run takes the
    connection, and the waiter queues again at the back, so under load a few requests wait many
    turns. On the FHIR CRUD bench with 8 connections per worker that was a p99 of 185 ms against
    82 ms first come, first served (docs/fhir.md, "Performance (CRUD)").
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False, *, waiting: Gauge | None = None) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()
        #: The gauge of requests waiting (`metrics.DB_POOL_WAITING` of the pool's role), if any.
        self._waiting = waiting

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise sqla_queue.Full()
        self._items.append(item)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # never full: the pool gives back only what it handed out

    def get_nowait(self) -> T:
        if not self._items:
            raise sqla_queue.Empty()
        return self._items.pop() if self.use_lifo else self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        # Idle connections and waiters never coexist: `put_nowait` serves waiters first.
        if not block or self._items:
            return self.get_nowait()
        return await_(self._wait(timeout))

    async def _wait(self, timeout: float | None) -> T:
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._waiting is not None:
            self._waiting.inc()
        try:
            # Not wait_for: it swallows a cancellation that comes with the connection (Python 3.11).
            async with asyncio.timeout(timeout):
                return await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # handed one just as it gave up: pass it on
            elif waiter in self._waiters:  # `put_nowait` may have dropped it already
                self._waiters.remove(waiter)
            if isinstance(error, TimeoutError):
                raise sqla_queue.Empty() from None  # the pool turns it into its TimeoutError (503)
            raise
        finally:
            if self._waiting is not None:
                self._waiting.dec()


@functools.cache
def fair_pool(role: str) -> type[AsyncAdaptedQueuePool]:
    """`AsyncAdaptedQueuePool` with a `FairQueue` counting its waiters in the gauge of ``role``."""
    waiting = metrics.DB_POOL_WAITING.labels(role)

    class Queue(FairQueue[Any]):
        def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
            super().__init__(maxsize, use_lifo, waiting=waiting)

    return type("FairQueuePool", (AsyncAdaptedQueuePool,), {"_queue_class": Queue})


def make_engine(url: str, *, pool_size: int, idle_timeout_ms: int, role: str = "primary") -> AsyncEngine:
    """An engine with a bounded, first come first served pool, a ping for idle connections, and
    server-side idle timeout."""
    engine = create_async_engine(
        async_url(url),
        poolclass=fair_pool(role),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={
            "timeout": 5,
            "server_settings": {
                "application_name": "hims",
                # The guide's DATABASE_IDLE_TIMEOUT: the server closes pooled connections that sit
                # idle this long; the ping on checkout replaces them transparently.
                "idle_session_timeout": str(idle_timeout_ms),
            },
        },
    )
    _ping_when_idle(engine)  # before _track_pool: a failed ping must not count as a checkout
    _track_pool(engine, role, pool_size)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """pool_pre_ping, but only for connections idle longer than `PING_AFTER_IDLE_S`.

    A failed ping invalidates the whole pool, as pool_pre_ping does: when one connection is dead
    after an outage, the others are too. Any error of the ping counts as failed (pre-ping let
    asyncpg's "another operation is in progress", seen on a connection the server has just
    terminated, through as an error of the request).
    """
    dialect = engine.sync_engine.dialect

    def checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
            return  # just connected, or in use a moment ago
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:  # e.g. the server's "terminating connection" read mid-ping
            raise exc.InvalidatePoolError() from error
        if not alive:
            raise exc.InvalidatePoolError()

    def checkin(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        if record is not None:
            record.info[_CHECKED_IN_AT] = time.monotonic()

    event.listen(engine.sync_engine.pool, "checkout", checkout)
    event.listen(engine.sync_engine.pool, "checkin", checkin)


def _track_pool(engine: AsyncEngine, role: str, size: int) -> None:
    metrics.DB_POOL_SIZE.labels(role).set(size)
    in_use = metrics.DB_POOL_IN_USE.labels(role)
    key = "hims_counted_in_use"

    # A checkout that fails its ping (database gone) is checked in without a checkout
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


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under ``session``, with the session's transaction begun on it.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, before the first statement *it* executes;
    statements sent straight to the driver before that ran in autocommit, each committed on its
    own (a FHIR write stayed committed when its PHI access log row, or a later check of the same
    request, failed). This begins the adapter's transaction first, so whatever runs on the
    returned connection commits or rolls back with the session.
    """
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if adapted._transaction is None:
        try:
            await adapted._start_transaction()
        except Exception as error:  # BEGIN fails only on a broken connection: never pool it again
            await conn.invalidate(error)
            raise
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    return driver


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
            except BaseException:
                jobs.take_deferred(session)
                raise
            deferred = jobs.take_deferred(session)
        await jobs.send(queue or self.queue, deferred)

    @asynccontextmanager
    async def statement_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled driver connection outside any transaction: each statement commits on its own.

        For a request whose writes are one statement (a FHIR read with its PHI log row, a create,
        an optimistic update or delete): no session, no BEGIN/COMMIT round trips. Anything needing
        two writes to commit together uses `driver_transaction()` or `transaction()`.
        """
        raw = await self.engine.raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        try:
            yield driver
        except BaseException as error:
            # Broken, or interrupted mid-statement (a cancelled request): its protocol state is
            # unknown, so it is closed rather than pooled again. An error PostgreSQL reported, or
            # one of ours, leaves it usable.
            if (
                not isinstance(error, Exception)
                or driver.is_closed()
                or isinstance(error, asyncpg.InterfaceError | OSError)
            ):
                raw.invalidate(error)
            raise
        finally:
            await greenlet_spawn(raw.close)

    @asynccontextmanager
    async def driver_transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A driver connection in one transaction, committed on success and rolled back on any
        error, without an ORM session: for work made only of driver statements.
        """
        async with self.statement_connection() as conn, conn.transaction():
            yield conn

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
