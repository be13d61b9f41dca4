"""Helpers for the PHI access log's chain tests: writer connections and `hims audit verify`."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any

import asyncpg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from hims.audit.service import record
from hims.cli import app
from hims.core.security import Actor

Verify = Callable[..., Awaitable[Result]]


def staff(name: str = "dr.osei") -> Actor:
    """A signed-in account reading over the API."""
    return Actor(
        user_id=uuid.uuid4(), username=name, client_ip="10.1.2.3", request_id=uuid.uuid4().hex, channel="api"
    )


async def log_reads(conn: asyncpg.Connection, count: int, *, actor: Actor | None = None) -> None:
    """``count`` log rows through the application's insert path, one statement each."""
    who = actor or staff()
    for n in range(count):
        await record(
            conn,
            actor=who,
            action="read",
            resource_type="Patient",
            accesses=[(uuid.uuid4(), f"Patient/{n}")],
        )


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A fresh database session (so a chain of its own)."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A session in replica mode, as a superuser restoring a backup: triggers do not fire."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET session_replication_role = replica")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def verify(database_url: str) -> Verify:
    """Run `hims audit verify ARGS` against the test database (in a thread: it runs its own loop)."""

    async def run(*args: str) -> Result:
        env = {"DATABASE_URL": database_url, "HIMS_ENV": "test", "LOG_LEVEL": "warning", "COLUMNS": "200"}
        return await asyncio.to_thread(CliRunner().invoke, app, ["audit", "verify", *args], env=env)

    return run


async def rows(conn: asyncpg.Connection, where: str = "true", *args: Any) -> list[asyncpg.Record]:
    """Log rows (all columns, plus ``ip_text``) in id order."""
    return list(
        await conn.fetch(
            f"SELECT *, ip_address::text AS ip_text FROM phi_access_log WHERE {where} ORDER BY id", *args
        )
    )


ZERO = bytes(32)


def quote_nullable(value: str | None) -> str:
    """PostgreSQL's quote_nullable(), as docs/audit.md describes it."""
    if value is None:
        return "NULL"
    body = value.replace("'", "''").replace("\\", "\\\\")
    return ("E'" if "\\" in value else "'") + body + "'"


def canonical(row: asyncpg.Record) -> str:
    """The canonical text of a log row, written from docs/audit.md alone."""
    return ",".join(
        [
            str(row["id"]),
            row["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            str(row["user_id"] or ""),
            quote_nullable(row["username"]),
            str(row["patient_id"] or ""),
            quote_nullable(row["action"]),
            quote_nullable(row["resource_type"]),
            quote_nullable(row["resource_id"]),
            row["ip_text"] or "",
            quote_nullable(row["request_id"]),
            quote_nullable(row["channel"]),
            quote_nullable(row["outcome"]),
            str(row["chain"]),
            str(row["seq"]),
        ]
    )


def assert_one_valid_chain(chain_rows: list[asyncpg.Record]) -> None:
    """Rows (in id order) form one whole chain: seq 0.., each linked to the one before, hashes right."""
    assert len({r["chain"] for r in chain_rows}) == 1
    assert [r["seq"] for r in chain_rows] == list(range(len(chain_rows)))
    previous = ZERO
    for row in chain_rows:
        assert row["prev_hash"] == previous
        assert row["row_hash"] == hashlib.sha256(row["prev_hash"] + canonical(row).encode()).digest()
        previous = row["row_hash"]
