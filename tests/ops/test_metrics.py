"""/metrics: route-template labels, pool gauges, app info, access control, multi-worker aggregation."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from hims import __version__
from hims.app import create_app
from hims.core.security import require_public
from hims.settings import Settings
from tests.support import Server, base_env, free_port, wait_for_status

router = APIRouter(prefix="/api/v1/metrics-test", dependencies=[require_public()])


@router.get("/things/{thing_id}")
async def read_thing(thing_id: str) -> dict[str, str]:
    return {"id": thing_id}


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples(text) if n == name and labels.items() <= lab.items())


@asynccontextmanager
async def client_from(settings: Settings, address: str) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    app.include_router(router)
    transport = ASGITransport(app=app, client=(address, 40000))
    async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_requests_are_counted_by_route_template(settings: Settings):
    async with client_from(settings, "127.0.0.1") as http:
        before = (await http.get("/metrics")).text
        await http.get("/health/detailed")
        await http.get("/api/v1/metrics-test/things/7c1e5d0a-raw-id")
        await http.get("/api/v1/metrics-test/things/another-raw-id")
        await http.get("/no/such/path/raw-id-999")
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "raw-id" not in text
    template = "/api/v1/metrics-test/things/{thing_id}"

    def grew(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    assert grew("http_requests_total", method="GET", route="/health/detailed", status="200") == 1
    assert grew("http_requests_total", method="GET", route=template, status="200") == 2
    assert grew("http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert grew("http_request_duration_seconds_count", method="GET", route=template) == 2
    assert value(text, "http_request_duration_seconds_bucket", route=template, le="+Inf") >= 2
    assert value(text, "hims_db_pool_size", role="primary") >= settings.database_max_connections
    assert any(n == "hims_db_pool_connections_in_use" for n, _, _ in samples(text))
    assert value(text, "hims_app_info", version=__version__, environment="test") == 1


async def test_allowed_network_needs_no_token(settings: Settings):
    async with client_from(settings.model_copy(update={"metrics_token": None}), "127.0.0.1") as http:
        assert (await http.get("/metrics")).status_code == 200


async def test_client_outside_allowed_networks_is_forbidden(settings: Settings):
    async with client_from(settings, "203.0.113.9") as http:
        response = await http.get("/metrics")
    assert response.status_code == 403
    assert response.json()["code"] == "network_not_allowed"


async def test_metrics_token(settings: Settings):
    from pydantic import SecretStr

    with_token = settings.model_copy(update={"metrics_token": SecretStr("scrape-token-" + "x" * 20)})
    async with client_from(with_token, "203.0.113.9") as http:
        good = await http.get("/metrics", headers={"Authorization": "Bearer scrape-token-" + "x" * 20})
        assert good.status_code == 200
        assert "http_requests_total" in good.text
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_token"
        missing = await http.get("/metrics")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"


async def test_allowed_networks_are_configurable(settings: Settings):
    custom = settings.model_copy(update={"metrics_allow_networks": ["10.0.0.0/8"]})
    async with client_from(custom, "10.20.30.40") as http:
        assert (await http.get("/metrics")).status_code == 200
    async with client_from(custom, "127.0.0.1") as http:
        assert (await http.get("/metrics")).status_code == 403


@pytest.mark.slow
def test_two_workers_aggregate_their_counts(database_url: str, redis_url: str, tmp_path):
    port = free_port()
    env = base_env(tmp_path, DATABASE_URL=database_url, REDIS_URL=redis_url, HIMS_ENV="test")
    server = Server(["serve", "--workers", "2", "--port", str(port)], env, tmp_path / "server.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_status(f"{base}/health/ready", proc=server.proc)
        # Each request on a fresh connection so the kernel spreads them over both workers.
        served_by = set()
        for _ in range(30):
            served_by.add(httpx.get(f"{base}/health", headers={"Connection": "close"}).status_code)
        assert served_by == {200}
        metrics_dir = tmp_path / "var" / "prometheus"
        deadline = time.monotonic() + 10
        pids: set[str] = set()
        while time.monotonic() < deadline:
            # The supervisor (server.proc) may write an unlabelled counter's file too; count workers.
            pids = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")} - {
                str(server.proc.pid)
            }
            if len(pids) >= 2:
                break
            httpx.get(f"{base}/health", headers={"Connection": "close"})
            time.sleep(0.05)
        # At least both workers (a worker replaced by the supervisor leaves its file, still counted).
        assert len(pids) >= 2, "both workers must write metrics"
        totals = set()
        for _ in range(4):
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
            totals.add(value(text, "http_requests_total", route="/health", status="200"))
        # Whichever worker answers /metrics reports every worker's requests.
        assert len(totals) == 1
        total = totals.pop()
        assert total >= 30
        assert value(text, "hims_app_info", version=__version__) == 1
    finally:
        assert server.stop() == 0, server.log()[-2000:]


class SlowSmtp:
    """A TCP server that waits before sending its SMTP greeting (a naturally slow dependency)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.set()
            time.sleep(self.delay)
            try:
                conn.sendall(b"220 slow.example ESMTP\r\n")
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.slow
def test_sigterm_lets_in_flight_request_finish(database_url: str, redis_url: str, tmp_path):
    smtp = SlowSmtp(delay=1.0)
    port = free_port()
    env = base_env(
        tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        HIMS_ENV="test",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
    )
    server = Server(["serve", "--port", str(port)], env, tmp_path / "server.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_status(f"{base}/health/ready", proc=server.proc)
        result: dict[str, httpx.Response] = {}

        def slow_request() -> None:
            result["response"] = httpx.get(f"{base}/health/detailed", timeout=10)

        thread = threading.Thread(target=slow_request)
        thread.start()
        assert smtp.accepted.wait(5), "the request never reached the SMTP check"
        started = time.monotonic()
        server.proc.terminate()
        thread.join(10)
        response = result["response"]
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["externalServices"]["smtp"]["status"] == "healthy"
        assert server.proc.wait(10) == 0
        assert time.monotonic() - started < 5
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/health", timeout=1)
        log = server.log()
        assert '"event": "stopped"' in log
    finally:
        server.stop()
        smtp.close()
