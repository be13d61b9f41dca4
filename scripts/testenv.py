"""Find or start the PostgreSQL and Redis the test suite needs; print shell exports.

Uses the servers at their usual local addresses when they answer (as on CI); otherwise starts
private ones under ./var/test (embedded PostgreSQL; `redis-server` if installed). With
``--require`` (set by CI) a missing service is an error, never a skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRIVATE = ROOT / "var" / "test"


def answers(host: str, port: int) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_url() -> str:
    """The local server if it answers, else a private embedded cluster."""
    if answers("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    sys.path.insert(0, str(ROOT / "src"))
    from hims.core.embedded import EmbeddedPostgres

    cluster = EmbeddedPostgres(PRIVATE / "postgres")
    cluster.start()
    return cluster.url("postgres")


def redis_url() -> str | None:
    """The local Redis if it answers, else a private redis-server, else None."""
    if answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379"
    server = shutil.which("redis-server")
    if server is None:
        return None
    port = 6390
    if not answers("127.0.0.1", port):
        PRIVATE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                server,
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(PRIVATE),
                "--logfile",
                str(PRIVATE / "redis.log"),
            ],
            check=True,
        )
        for _ in range(50):
            if answers("127.0.0.1", port):
                break
            time.sleep(0.1)
    return f"redis://127.0.0.1:{port}"


def main() -> int:
    """Print `export` lines for scripts/test."""
    require = "--require" in sys.argv
    database = postgres_url()
    redis = redis_url()
    if redis is None:
        message = "no Redis answers at 127.0.0.1:6379 and redis-server is not installed"
        if require:
            print(f"echo '{message}' >&2; exit 1")
            return 1
        print(f"echo 'warning: {message}; Redis tests will fail' >&2")
        redis = "redis://127.0.0.1:6379"
    print(f"export HIMS_TEST_DATABASE_URL='{database}'")
    print(f"export HIMS_TEST_REDIS_URL='{redis}'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
