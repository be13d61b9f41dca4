from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from hims.core import db as db_module
from hims.core.db import Database, async_url, driver_connection


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
