from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import event, exc, text
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util import queue as sqla_queue

from hims.core import db as db_module
from hims.core import metrics
from hims.core.db import Database, FairQueue, async_url, driver_connection
from hims.core.errors import unexpected_error


def test_urls_are_normalised_to_asyncpg():
    assert async_url("postgres://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"
    assert async_url("postgresql://u:p@h/d?sslmode=require") == "postgresql+asyncpg://u:p@h/d?ssl=require"
    with pytest.raises(ValueError, match="postgresql://"):
        async_url("mysql://h/d")


@pytest.mark.parametrize("mode", ["disable", "prefer"])
async def test_guide_style_sslmode_urls_connect(database_url: str, mode: str):
    db = Database(f"{database_url}?sslmode={mode}", pool_size=1)
    try:
        await db.ping()
    finally:
        await db.dispose()


async def test_statements_sent_to_the_driver_run_in_the_session_transaction(db: Database):
    async with db.transaction() as session:
        conn = await driver_connection(session)
        assert conn.is_in_transaction()
        await conn.execute("CREATE TABLE tx_probe (n int)")
        await conn.execute("INSERT INTO tx_probe VALUES (1)")
        # The adapter's own statements join the same transaction instead of beginning another.
        assert (await session.execute(text("SELECT count(*) FROM tx_probe"))).scalar_one() == 1

    async def insert_then_fail() -> None:
        async with db.transaction() as session:
            conn = await driver_connection(session)
            await conn.execute("INSERT INTO tx_probe VALUES (2)")
            raise RuntimeError("the request failed after the write")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    async with db.transaction() as session:
        assert (await session.execute(text("SELECT array_agg(n) FROM tx_probe"))).scalar_one() == [1]
        await session.execute(text("DROP TABLE tx_probe"))


async def _backend_pid(db: Database) -> int:
    async with db.transaction() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_back_from_a_request_a_moment_ago_is_not_pinged(database_url: str, monkeypatch):
    db = Database(database_url, pool_size=1)
    pings: list[object] = []
    monkeypatch.setattr(db.engine.sync_engine.dialect, "do_ping", lambda conn: pings.append(conn) or True)
    try:
        first = await _backend_pid(db)
        assert await _backend_pid(db) == first
        assert pings == []
    finally:
        await db.dispose()


async def test_an_idle_connection_the_server_closed_is_replaced_on_checkout(database_url: str, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection counts as idle
    db = Database(database_url, pool_size=1)
    try:
        first = await _backend_pid(db)
        admin = await asyncpg.connect(database_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        assert await _backend_pid(db) != first  # no error: the ping found it dead, the pool reconnected
    finally:
        await db.dispose()


async def test_driver_transactions_commit_roll_back_and_drop_an_interrupted_connection(database_url: str):
    db = Database(database_url, pool_size=1)
    try:
        async with db.driver_transaction() as conn:
            await conn.execute("CREATE TABLE driver_probe (n int)")
            await conn.execute("INSERT INTO driver_probe VALUES (1)")

        async def insert_then_fail() -> None:
            async with db.driver_transaction() as conn:
                await conn.execute("INSERT INTO driver_probe VALUES (2)")
                raise RuntimeError("the request failed after the write")

        with pytest.raises(RuntimeError):
            await insert_then_fail()
        async with db.statement_connection() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT array_agg(n) FROM driver_probe") == [1]
            kept = await conn.fetchval("SELECT pg_backend_pid()")
        async with db.statement_connection() as conn:  # an error of ours leaves it pooled
            assert await conn.fetchval("SELECT pg_backend_pid()") == kept

        # A request cancelled mid-statement (the client went away): its connection is closed,
        # not handed, mid-protocol, to the next request.
        async def slow() -> None:
            async with db.driver_transaction() as conn:
                await conn.execute("INSERT INTO driver_probe VALUES (3)")
                await conn.execute("SELECT pg_sleep(5)")

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.driver_transaction() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") != kept
            assert await conn.fetchval("SELECT array_agg(n) FROM driver_probe") == [1]
            await conn.execute("DROP TABLE driver_probe")
    finally:
        await db.dispose()


# ---------------------------------------------------------------- first come, first served


def _queue(role: str | None = None) -> FairQueue[str]:
    return FairQueue(2, waiting=metrics.DB_POOL_WAITING.labels(role) if role else None)


def _get(queue: FairQueue[str], timeout: float | None = None) -> asyncio.Task[str]:
    """A checkout as the pool makes it (its greenlet awaits the queue)."""
    return asyncio.ensure_future(greenlet_spawn(queue.get, True, timeout))


async def test_a_returned_connection_goes_to_the_longest_waiter_not_to_a_newcomer():
    """The barging SQLAlchemy's asyncio.Queue allows, which made the latency tail: a request
    asking in the same turn as a connection comes back (before the woken waiter runs) must not
    take it."""
    queue = _queue()
    waiter = _get(queue)
    await asyncio.sleep(0)

    async def give_back_then_ask() -> str:
        queue.put_nowait("first")
        return await greenlet_spawn(queue.get, True, None)

    newcomer = asyncio.ensure_future(give_back_then_ask())
    await asyncio.sleep(0)
    queue.put_nowait("second")
    assert (await waiter, await newcomer) == ("first", "second")
    assert queue.empty()


async def test_a_waiter_that_gives_up_keeps_no_connection():
    queue = _queue()
    cancelled = _get(queue)
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    queue.put_nowait("idle")
    assert queue.qsize() == 1  # nobody waits for it any more
    assert queue.get_nowait() == "idle"
    # Handed a connection in the same turn as it is cancelled: it passes the connection on.
    late, next_in_line = _get(queue), _get(queue)
    await asyncio.sleep(0)
    queue.put_nowait("handed")
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert await next_in_line == "handed"


async def test_a_wait_longer_than_the_timeout_is_empty_and_is_counted():
    queue = _queue("queue-test")
    waiting = metrics.DB_POOL_WAITING.labels("queue-test")
    task = _get(queue, timeout=0.2)
    await asyncio.sleep(0.05)
    assert waiting._value.get() == 1
    with pytest.raises(sqla_queue.Empty):
        await task
    assert waiting._value.get() == 0
    queue.put_nowait("late")
    assert queue.qsize() == 1


async def test_a_pool_wait_past_the_pool_timeout_is_a_503(database_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(db_module, "POOL_TIMEOUT_S", 0.2)
    db = Database(database_url, pool_size=1)
    try:
        async with db.statement_connection():
            with pytest.raises(exc.TimeoutError) as raised:
                async with db.statement_connection():
                    pass
        error = unexpected_error(raised.value)
        assert (error.status, error.code) == (503, "database_unavailable")
        async with db.statement_connection() as conn:  # the pool is whole again
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await db.dispose()


async def test_sessions_and_driver_connections_are_served_in_arrival_order(database_url: str):
    db = Database(database_url, pool_size=2)
    order: list[int] = []

    # The order connections leave the pool, by the task that takes each (a session begins and
    # runs its first statement after the checkout, so a mark after it would come too late).
    def checkout(*_args: object) -> None:
        task = asyncio.current_task()
        assert task is not None
        order.append(int(task.get_name()))

    event.listen(db.engine.sync_engine.pool, "checkout", checkout)

    async def driver_request() -> None:
        async with db.statement_connection() as conn:
            await conn.execute("SELECT pg_sleep(0.05)")

    async def session_request() -> None:
        async with db.transaction() as session:
            await session.execute(text("SELECT pg_sleep(0.05)"))

    try:
        tasks = []
        for n in range(8):
            request = session_request if n % 3 == 1 else driver_request
            tasks.append(asyncio.create_task(request(), name=str(n)))
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        assert order == list(range(8))
        assert isinstance(db.engine.sync_engine.pool, db_module.fair_pool("primary"))
    finally:
        await db.dispose()
