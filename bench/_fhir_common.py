"""Shared helpers for the FHIR benchmarks: a fresh database, a server process, percentiles."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from hims.ops import migrate

SERVER = os.environ.get("HIMS_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[1]


_CREATED: set[str] = set()


async def fresh_database(name: str) -> str:
    """Drop and create ``name`` plus this process's id (benches running at the same time do not
    clash), migrate it, return its URL. `drop_databases()` removes what this process created."""
    name = f"{name}_{os.getpid()}"
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    _CREATED.add(name)
    base, _, query = SERVER.partition("?")  # e.g. ?host=/var/run/postgresql (a Unix socket)
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    await asyncio.to_thread(migrate.upgrade, url)
    return url


async def drop_databases() -> None:
    """Drop the databases `fresh_database` created in this process."""
    conn = await asyncpg.connect(SERVER)
    try:
        for name in sorted(_CREATED):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    _CREATED.clear()


async def cleaning_up(main: Coroutine[Any, Any, None]) -> None:
    """Run a bench's ``main``, then drop the databases it created (also when it fails)."""
    try:
        await main
    finally:
        await drop_databases()


def free_port() -> int:
    """An unused TCP port on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(url: str, port: int, workers: int, data_dir: Path, pool: int) -> subprocess.Popen[bytes]:
    """`hims serve` on ``port`` against ``url``, with ``pool`` connections per worker."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HIMS_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "warning",
        "HIMS_ENV": "development",
        "DATABASE_MAX_CONNECTIONS": str(pool),
    }
    env.pop("REDIS_URL", None)
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "hims"), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(base: str, timeout: float = 60) -> None:
    """Poll /metadata until the server answers."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{base}/metadata")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError("server did not start")


async def wait_workers(server_pid: int, port: int, workers: int, timeout: float = 60) -> None:
    """Wait until ``workers`` processes under ``server_pid`` listen on ``port``: `hims serve`
    gives each worker a socket of its own (hims.ops.serving), and connections opened before a
    worker listens all go to the others."""
    server = psutil.Process(server_pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = 0
        for child in server.children(recursive=True):
            try:
                sockets = child.net_connections(kind="tcp")
            except psutil.Error:
                continue
            listening += any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets)
        if listening >= workers:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"fewer than {workers} workers listen on port {port}")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` in milliseconds."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
