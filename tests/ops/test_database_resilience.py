"""The app survives PostgreSQL going away and coming back, on a private cluster it controls."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from hims.app import create_app
from hims.core.deps import SessionDep
from hims.core.embedded import EmbeddedPostgres
from hims.core.security import require_public
from hims.ops import migrate
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

router = APIRouter(prefix="/api/v1/resilience", dependencies=[require_public()])


@router.get("/patients/count")
async def count_patients(session: SessionDep) -> dict[str, int]:
    result = await session.execute(text("SELECT count(*) FROM patients"))
    return {"count": int(result.scalar_one())}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        yield pg
    finally:
        pg.stop()


async def client_for(url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    app = create_app(make_settings(url, redis_url, hims_data_dir=tmp_path))
    app.include_router(router)
    transport = ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


async def wait_ready(http: AsyncClient, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if (await http.get("/health/ready")).status_code == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never became ready")


def pool_in_use() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("hims_db_pool_connections_in_use", {"role": "primary"}) or 0.0


async def test_requests_get_503_while_database_is_down_and_recover(cluster, redis_url, tmp_path):
    in_use_before = pool_in_use()
    url = await asyncio.to_thread(cluster.start)
    await asyncio.to_thread(migrate.upgrade, url)
    async for http in client_for(url, redis_url, tmp_path):
        await wait_ready(http)
        assert (await http.get("/api/v1/resilience/patients/count")).json() == {"count": 0}

        await asyncio.to_thread(cluster.stop)
        for _ in range(3):  # pooled connections are dead, new ones are refused: never a 500
            response = await http.get("/api/v1/resilience/patients/count")
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "database_unavailable"
            assert response.headers["retry-after"]
        assert (await http.get("/health/ready")).status_code == 503
        assert (await http.get("/health")).status_code == 200

        assert await asyncio.to_thread(cluster.start) == url
        # No restart: the pool replaces its dead connections by itself.
        await wait_ready(http)
        response = await http.get("/api/v1/resilience/patients/count")
        assert response.status_code == 200, response.text
    # Connections lost in the outage were given back: the in-use gauge did not drift.
    assert pool_in_use() == in_use_before


async def test_app_started_before_database_waits_and_becomes_ready(
    cluster, redis_url, tmp_path, capfd: pytest.CaptureFixture[str]
):
    url = await asyncio.to_thread(cluster.start)
    await asyncio.to_thread(migrate.upgrade, url)
    await asyncio.to_thread(cluster.stop)
    captured: list[str] = []

    def start_up_waits() -> list[dict]:
        captured.append(capfd.readouterr().err)
        records = [json.loads(line) for line in "".join(captured).splitlines() if line.startswith("{")]
        return [r for r in records if r.get("event") == "database_unavailable" and "retry_in_s" in r]

    async for http in client_for(url, redis_url, tmp_path):
        assert (await http.get("/health/ready")).status_code == 503
        assert (await http.get("/api/v1/resilience/patients/count")).status_code == 503
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(start_up_waits()) < 2 and loop.time() < deadline:  # the retry loop backs off
            await asyncio.sleep(0.05)
        assert http.app.state.database_ready is False  # type: ignore[attr-defined]
        await asyncio.to_thread(cluster.start)
        await wait_ready(http)
        deadline = loop.time() + 10
        while not http.app.state.database_ready and loop.time() < deadline:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
        assert http.app.state.database_ready  # type: ignore[attr-defined]
        assert (await http.get("/api/v1/resilience/patients/count")).status_code == 200
    waits = start_up_waits()
    assert len(waits) >= 2
    assert waits[1]["retry_in_s"] > waits[0]["retry_in_s"]  # backoff
    assert all("://" not in r.get("detail", "") for r in waits)  # no URL with its password


def test_embedded_cluster_as_current_user_creates_no_system_users(tmp_path):
    before = {name: Path(f"/etc/{name}").read_bytes() for name in ("passwd", "group")}
    cluster = EmbeddedPostgres(tmp_path / "pg")
    url = cluster.start()
    try:
        assert url.startswith("postgresql://postgres:")
        assert "@127.0.0.1:" in url
        assert cluster.running_pid() is not None
        assert stat.S_IMODE(os.stat(cluster.pgdata).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(cluster.root).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(cluster.root / "password").st_mode) == 0o600
        # Files stay owned by the user who ran it (root on CI), not by a created account.
        assert os.stat(cluster.pgdata).st_uid == os.geteuid()
    finally:
        cluster.stop()
    assert cluster.running_pid() is None
    assert not (cluster.pgdata / "postmaster.pid").exists()
    after = {name: Path(f"/etc/{name}").read_bytes() for name in ("passwd", "group")}
    assert after == before
    # A second start reuses the cluster and its port (so a running app's URL stays valid).
    assert cluster.start() == url
    cluster.stop()


def test_server_without_contrib_is_reported_clearly(tmp_path):
    # The PyPI wheel's PostgreSQL has no contrib extensions: a bare machine's situation.
    from hims.core.embedded import wheel_bindir
    from tests.support import base_env, hims

    cluster = EmbeddedPostgres(tmp_path / "pg", bindir=wheel_bindir())
    url = cluster.start()
    try:
        env = base_env(tmp_path, DATABASE_URL=url)
        migrated = hims("db", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "warning: PostgreSQL extensions not available: pg_trgm" in migrated.stderr
        assert "postgresql-contrib" in migrated.stderr
        verify = hims("db", "verify", env=env)
        assert verify.returncode == 1
        assert "drift: extension: pg_trgm is not installed" in verify.stdout
        # No btree_gist, so no exclusion constraint: the fallback trigger still refuses a
        # practitioner's overlapping booking, with the constraint's SQLSTATE.
        asyncio.run(_assert_double_booking_refused(url))
    finally:
        cluster.stop()


async def _assert_double_booking_refused(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        practitioner = await conn.fetchval(
            "INSERT INTO practitioners (id, identifiers, given_name, family_name, profession, active,"
            " version) VALUES (gen_random_uuid(), '[]', 'Ada', 'Test', 'physician', true, 1) RETURNING id"
        )
        patient = await conn.fetchval(
            "INSERT INTO patients (id, mrn, given_name, family_name, date_of_birth, sex_at_birth,"
            " identifiers, deceased, active, version) VALUES (gen_random_uuid(), 'T1', 'Sam', 'Test',"
            " '1980-01-01', 'unknown', '[]', false, true, 1) RETURNING id"
        )
        book = (
            "INSERT INTO appointments (id, patient_id, practitioner_id, starts_at, ends_at, type, status,"
            " version) VALUES (gen_random_uuid(), $1, $2, $3::timestamptz, $4::timestamptz,"
            " 'in_person', 'booked', 1)"
        )

        def at(hour: int, minute: int) -> datetime:
            return datetime(2030, 1, 1, hour, minute, tzinfo=UTC)

        await conn.execute(book, patient, practitioner, at(9, 0), at(9, 30))
        await conn.execute(book, patient, practitioner, at(9, 30), at(10, 0))  # back to back is fine
        with pytest.raises(asyncpg.ExclusionViolationError):
            await conn.execute(book, patient, practitioner, at(9, 15), at(9, 45))
    finally:
        await conn.close()
