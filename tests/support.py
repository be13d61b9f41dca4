"""Helpers for tests that run the real `hims` console script or a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

HIMS = str(Path(sys.executable).parent / "hims")
ROOT = Path(__file__).resolve().parent.parent


def base_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A controlled environment: nothing from the caller's except PATH/HOME/LANG."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    env["HIMS_DATA_DIR"] = str(tmp_path / "var")
    env["COLUMNS"] = "200"
    env.update(variables)
    return env


def hims(
    *args: str, env: dict[str, str], timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run `hims ARGS` to completion with stdin closed."""
    return subprocess.run(
        [HIMS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        **kwargs,
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_status(url: str, status: int = 200, *, timeout: float = 30, proc: Any = None) -> float:
    """Poll ``url`` until it answers ``status``; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s")


class Server:
    """A real `hims` server process; its stderr goes to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [HIMS, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = 15, timeout: float = 30) -> int:
        """Send ``sig`` (SIGTERM) and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


async def phi_rows(database_url: str, **where: Any) -> list[asyncpg.Record]:
    """PHI access log rows matching column=value filters (compared as text), oldest first."""
    conn = await asyncpg.connect(database_url)
    try:
        clause = " AND ".join(f"{k}::text = ${i}" for i, k in enumerate(where, 1)) or "true"
        values = [str(v) for v in where.values()]
        return list(await conn.fetch(f"SELECT * FROM phi_access_log WHERE {clause} ORDER BY id", *values))
    finally:
        await conn.close()


async def count_rows(database_url: str, table: str) -> int:
    """Rows in ``table``."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{table}"'))
    finally:
        await conn.close()
