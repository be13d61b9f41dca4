"""`hims up` with no DATABASE_URL: embedded cluster, migrate, serve, and a clean stop on Ctrl-C."""

from __future__ import annotations

import signal

import httpx
import pytest

from hims.core.embedded import EmbeddedPostgres
from tests.support import Server, base_env, free_port, hims, wait_for_status

pytestmark = pytest.mark.slow


def test_up_runs_everything_on_an_embedded_database_and_stops_it(tmp_path):
    port = free_port()
    env = base_env(tmp_path)  # no DATABASE_URL, no REDIS_URL
    server = Server(["up", "--port", str(port)], env, tmp_path / "up.log")
    cluster = EmbeddedPostgres(tmp_path / "var" / "postgres")
    try:
        wait_for_status(f"http://127.0.0.1:{port}/health/ready", timeout=60, proc=server.proc)
        assert cluster.running_pid() is not None
        # Migrated: the schema matches the models while it runs.
        verify = hims("db", "verify", env=env)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "healthy"
    finally:
        status = server.stop(signal.SIGINT)
    assert status == 0, server.log()[-3000:]
    assert cluster.running_pid() is None
    assert not (cluster.pgdata / "postmaster.pid").exists()
    assert "embedded_stopped" in server.log()
