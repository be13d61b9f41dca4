"""Test harness: a real PostgreSQL database and Redis DB per xdist worker.

``HIMS_TEST_DATABASE_URL`` names a server (maintenance database); each worker creates its own
fresh database on it, migrates it to head, and drops it at the end. ``HIMS_TEST_REDIS_URL``
names a Redis server; each worker uses its own logical DB, flushed between tests.
`scripts/test` sets both (starting private servers when none answer locally).
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from hims import composition
from hims.app import create_app
from hims.core.db import Database
from hims.models import metadata
from hims.ops import migrate
from hims.ops.partitions import ensure
from hims.settings import Settings

SERVER_URL = os.environ.get("HIMS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HIMS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Tables whose rows are reference data written by migrations, never truncated between tests.
KEEP_TABLES = {"alembic_version"}


def _worker_index(config: Any) -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session", autouse=True)
def _wired() -> None:
    """The composition root's wiring, as every entry point does at start."""
    composition.wire()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for this worker, migrated to head; dropped afterwards."""
    name = f"hims_test_{_worker_index(request.config)}_{uuid.uuid4().hex[:8]}"
    admin = SERVER_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    import asyncio

    asyncio.run(create())
    url = _with_database(admin, name)
    migrate.upgrade(url)
    try:
        yield url
    finally:
        asyncio.run(drop())


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """This worker's Redis logical database (offset by checkout so parallel checkouts rarely share)."""
    offset = zlib.crc32(str(request.config.rootpath).encode()) % 13
    index = 3 + (offset + _worker_index(request.config)) % 13
    return f"{REDIS_URL.rstrip('/')}/{index}"


def make_settings(database_url: str, redis_url: str | None, **overrides: Any) -> Settings:
    """Settings for tests: real services, development secrets, test environment."""
    values: dict[str, Any] = {
        "hims_env": "test",
        "database_url": SecretStr(database_url),
        "redis_url": redis_url,
        "database_max_connections": 10,
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Any) -> Settings:
    """Default test settings (data dir in a temporary folder)."""
    return make_settings(database_url, redis_url, hims_data_dir=tmp_path)


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    """A Database for tests that talk to the schema directly."""
    database = Database(database_url, pool_size=5)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
async def partitions(database_url: str) -> str:
    """Consultation partitions from 2024 to next year + 2 (the migration only makes this year on)."""
    await ensure(database_url, from_year=2024)
    return database_url


@pytest.fixture(autouse=True)
async def _clean_state(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After each test that touched the database or Redis, empty them again."""
    yield
    if "database_url" in request.fixturenames:
        url = request.getfixturevalue("database_url")
        tables = [t.name for t in metadata.sorted_tables if t.name not in KEEP_TABLES]
        if tables:
            conn = await asyncpg.connect(url)
            try:
                # phi_access_log refuses TRUNCATE (it is append-only) except in replica mode, the
                # mode of a superuser restoring a backup; tests run as the superuser.
                await conn.execute("SET session_replication_role = replica")
                await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
            finally:
                await conn.close()
    if "redis_url" in request.fixturenames:
        redis = Redis.from_url(request.getfixturevalue("redis_url"))
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The application with its lifespan running."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[AsyncClient]:
    """Run an app built from ``settings`` (lifespan included) and yield a client for it."""
    application = create_app(settings)
    transport = ASGITransport(app=application, client=("127.0.0.1", 50000))
    async with (
        application.router.lifespan_context(application),
        AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        http.app = application  # type: ignore[attr-defined]
        yield http


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """An HTTP client talking to the in-process app (client address 127.0.0.1)."""
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
