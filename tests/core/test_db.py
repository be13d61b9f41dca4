from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import exc, text

from hims.core import db as db_module
from hims.core import metrics
from hims.core.db import Database, FairGate, async_url, driver_connection
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


async def _holder(gate: FairGate, name: str, order: list[str], hold: asyncio.Event) -> None:
    await gate.acquire()
    order.append(name)
    await hold.wait()
    gate.release()


async def test_a_freed_place_goes_to_the_longest_waiter_not_to_a_newcomer():
    """The barging an asyncio.Queue allows: a request arriving between a release and the woken
    waiter's turn must not take the place (that is what made the latency tail)."""
    gate = FairGate(1)
    order: list[str] = []
    hold = asyncio.Event()
    await gate.acquire()  # the place is taken
    waiter = asyncio.create_task(_holder(gate, "waiter", order, hold))
    await asyncio.sleep(0)
    assert len(gate.waiters) == 1
    gate.release()  # the waiter is woken but has not run yet
    newcomer = asyncio.create_task(_holder(gate, "newcomer", order, hold))
    await asyncio.sleep(0)
    hold.set()
    await asyncio.gather(waiter, newcomer)
    assert order == ["waiter", "newcomer"]
    assert (gate.free, len(gate.waiters)) == (1, 0)


async def test_a_waiter_that_gives_up_keeps_no_place():
    gate = FairGate(1)
    await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release()
    assert (gate.free, len(gate.waiters)) == (1, 0)
    # Handed the place in the same turn as it is cancelled: it passes the place on.
    await gate.acquire()
    late = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert (gate.free, len(gate.waiters)) == (1, 0)


async def test_a_wait_longer_than_the_pool_timeout_is_a_503_and_is_counted():
    gate = FairGate(1, timeout_s=0.2, role="gate-test")
    waiting = metrics.DB_POOL_WAITING.labels("gate-test")
    await gate.acquire()
    task = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.05)
    assert waiting._value.get() == 1
    with pytest.raises(exc.TimeoutError) as raised:
        await task
    assert waiting._value.get() == 0
    error = unexpected_error(raised.value)
    assert (error.status, error.code) == (503, "database_unavailable")
    assert (gate.free, len(gate.waiters)) == (0, 0)  # the holder still has its place


async def test_driver_connections_are_handed_out_in_arrival_order(database_url: str):
    db = Database(database_url, pool_size=2)
    order: list[int] = []

    async def request(n: int) -> None:
        async with db.statement_connection() as conn:
            order.append(n)
            await conn.execute("SELECT pg_sleep(0.05)")

    try:
        tasks = []
        for n in range(8):
            tasks.append(asyncio.create_task(request(n)))
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        assert order == list(range(8))
        assert db.driver_gate.free == 2
    finally:
        await db.dispose()
