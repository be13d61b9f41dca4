from __future__ import annotations

from httpx import AsyncClient

from hims import __version__
from tests.conftest import make_settings, serve_in_process


async def test_health_reports_status_time_and_version(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["timestamp"].endswith("Z")
    assert body["version"] == __version__


async def test_detailed_health_checks_each_dependency(client: AsyncClient) -> None:
    response = await client.get("/health/detailed")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "healthy"
    assert checks["database"]["latency_ms"] >= 0
    assert checks["redis"]["status"] == "healthy"
    assert checks["externalServices"]["storage"]["status"] == "healthy"
    assert checks["externalServices"]["smtp"]["status"] == "not_configured"


async def test_ready_and_detailed_fail_with_503_when_database_is_unreachable(redis_url, tmp_path) -> None:
    # A port nobody listens on: the app must still start and answer, saying it is not ready.
    settings = make_settings(
        "postgresql://postgres:hunter2@127.0.0.1:1/none", redis_url, hims_data_dir=tmp_path
    )
    async with serve_in_process(settings) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/health/live")).status_code == 200
        ready = await http.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unhealthy"
        detailed = await http.get("/health/detailed")
        assert detailed.status_code == 503
        assert detailed.json()["checks"]["database"]["error"]
        # No credentials leak into the report.
        assert "hunter2" not in detailed.text


async def test_detailed_health_503_when_redis_is_down(database_url, tmp_path) -> None:
    settings = make_settings(database_url, "redis://127.0.0.1:1/0", hims_data_dir=tmp_path)
    async with serve_in_process(settings) as http:
        detailed = await http.get("/health/detailed")
        assert detailed.status_code == 503
        assert detailed.json()["checks"]["redis"]["status"] == "unhealthy"
        assert detailed.json()["checks"]["database"]["status"] == "healthy"


async def test_in_process_fallback_is_reported_not_failed(database_url, tmp_path) -> None:
    settings = make_settings(database_url, None, hims_data_dir=tmp_path)
    async with serve_in_process(settings) as http:
        detailed = await http.get("/health/detailed")
        assert detailed.status_code == 200
        assert detailed.json()["checks"]["redis"]["status"] == "not_configured"
