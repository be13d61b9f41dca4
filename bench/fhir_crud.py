"""HealthSamurai-style FHIR CRUD benchmark against `hims serve --workers N`.

Each virtual user loops: create Patient, Location, Organization, Practitioner, Encounter,
Observation, MedicationRequest (with references between them), read each, update each, delete
each in reverse order. Prints req/s and p50/p95/p99 per operation. Then runs the same scenario, with
the same load generator, against the floor app (`bench/_crud_floor.py`: the same stack with none of
our code) and prints hims's req/s as a share of it.

    .venv/bin/python bench/fhir_crud.py --users 50 --duration 20 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil

from _crud_floor import SCHEMA
from _fhir_common import (
    ROOT,
    cleaning_up,
    free_port,
    fresh_database,
    pct,
    start_server,
    wait_ready,
    wait_workers,
)
from benchauth import bench_token
from hims.core.db import Database
from hims.core.security import Actor
from hims.fhir.importer import discover, ensure_file_partitions, import_paths
from hims.settings import Settings


def resources(ids: dict[str, str]) -> list[dict[str, Any]]:
    """The seven resources of one scenario iteration, referencing what was created before."""
    p, loc, org, pr = (ids.get(k) for k in ("Patient", "Location", "Organization", "Practitioner"))
    enc = ids.get("Encounter")
    return [
        {
            "resourceType": "Patient",
            "name": [{"family": "Bench", "given": ["Mark"]}],
            "gender": "male",
            "birthDate": "1970-01-01",
            "address": [{"city": "Springfield", "line": ["1 Main St"]}],
        },
        {"resourceType": "Location", "name": "Ward 1", "status": "active"},
        {"resourceType": "Organization", "name": "General Hospital", "active": True},
        {"resourceType": "Practitioner", "name": [{"family": "House", "given": ["Greg"]}]},
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{p}"},
            "serviceProvider": {"reference": f"Organization/{org}"},
            "location": [{"location": {"reference": f"Location/{loc}"}}],
            "participant": [{"individual": {"reference": f"Practitioner/{pr}"}}],
            "period": {"start": "2024-01-01T10:00:00Z", "end": "2024-01-01T11:00:00Z"},
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{p}"},
            "encounter": {"reference": f"Encounter/{enc}"},
            "effectiveDateTime": "2024-01-01T10:30:00Z",
            "valueQuantity": {"value": 72, "unit": "/min"},
        },
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "aspirin"},
            "subject": {"reference": f"Patient/{p}"},
            "encounter": {"reference": f"Encounter/{enc}"},
            "requester": {"reference": f"Practitioner/{pr}"},
        },
    ]


class CpuMeter:
    """CPU seconds used by the load generator, the server process tree and PostgreSQL over a window.

    On a shared 2-core machine the client competes with the server; the split says how much of the
    machine the figures measure the server on.
    """

    def __init__(self, server_pid: int) -> None:
        self.server = psutil.Process(server_pid)
        self.client = psutil.Process()
        self.start = self._sample()
        self.started = time.monotonic()

    def _sample(self) -> dict[str, float]:
        def cpu(procs: list[psutil.Process]) -> float:
            total = 0.0
            for proc in procs:
                try:
                    times = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
            return total

        postgres = [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]
        machine = psutil.cpu_times()
        return {
            "client": cpu([self.client]),
            "server": cpu([self.server, *self.server.children(recursive=True)]),
            "postgres": cpu(postgres),
            "busy": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        }

    def report(self, requests: int) -> str:
        """Cores used by each party over the window, and server and PostgreSQL CPU per request.

        "other" is everything else on the machine (another benchmark or test run skews the figures).
        """
        end = self._sample()
        wall = time.monotonic() - self.started
        used = {k: (end[k] - self.start[k]) / wall for k in end}
        other = used["busy"] - used["client"] - used["server"] - used["postgres"]
        per_request = {k: 1000 * (end[k] - self.start[k]) / max(requests, 1) for k in end}
        return (
            f"CPU (cores of {psutil.cpu_count()}): client {used['client']:.2f}, server {used['server']:.2f}, "
            f"postgres {used['postgres']:.2f}, other {max(other, 0.0):.2f}, machine busy {used['busy']:.2f}\n"
            f"CPU ms per request: server {per_request['server']:.2f}, "
            f"postgres {per_request['postgres']:.2f}, client {per_request['client']:.2f}"
        )


class Conn:
    """A minimal HTTP/1.1 keep-alive client (one connection per virtual user).

    httpx spends several ms of CPU per request with 50+ concurrent connections, which on this 2-core
    machine made the load generator the bottleneck; this does the minimum (Content-Length bodies).
    """

    def __init__(self, host: str, port: int, prefix: str, token: str) -> None:
        self.host, self.port, self.prefix, self.token = host, port, prefix, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = orjson.dumps(body) if body is not None else b""
        head = (
            f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: application/fhir+json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload


async def user(conn: Conn, stop: float, lat: dict[str, list[float]], errors: list[str]) -> None:
    """One virtual user looping the scenario until ``stop``."""

    async def call(op: str, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        started = time.perf_counter()
        status, payload = await conn.request(method, url, body)
        lat[op].append(time.perf_counter() - started)
        if status >= 400:
            errors.append(f"{op} {status}")
        return status, payload

    while time.monotonic() < stop:
        ids: dict[str, str] = {}
        bodies: dict[str, dict[str, Any]] = {}
        for index in range(7):
            body = resources(ids)[index]
            status, payload = await call("create", "POST", f"/{body['resourceType']}", body)
            if status != 201:
                break
            stored = orjson.loads(payload)
            ids[body["resourceType"]] = stored["id"]
            bodies[body["resourceType"]] = stored
        for rtype, rid in ids.items():
            await call("read", "GET", f"/{rtype}/{rid}")
        for rtype, rid in ids.items():
            body = {**bodies[rtype], "id": rid}
            body.pop("meta", None)
            body["language"] = "en"
            await call("update", "PUT", f"/{rtype}/{rid}", body)
        for rtype, rid in reversed(list(ids.items())):
            await call("delete", "DELETE", f"/{rtype}/{rid}")


async def load(
    port: int, token: str, users: int, duration: float, server_pid: int, warmup: float
) -> tuple[dict[str, list[float]], list[str], float, str]:
    """Run the scenario with ``users`` virtual users for ``duration`` seconds against ``port``,
    after ``warmup`` seconds of the same load that are not measured."""
    lat: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    conns = [Conn("127.0.0.1", port, "/fhir/R4", token) for _ in range(users)]
    if warmup > 0:
        until = time.monotonic() + warmup
        await asyncio.gather(*(user(c, until, defaultdict(list), errors) for c in conns))
    meter = CpuMeter(server_pid)
    started = time.monotonic()
    await asyncio.gather(*(user(c, started + duration, lat, errors) for c in conns))
    elapsed = time.monotonic() - started
    return lat, errors, elapsed, meter.report(sum(len(v) for v in lat.values()))


def start_floor(url: str, port: int, workers: int, pool: int) -> subprocess.Popen[bytes]:
    """The floor app (`bench/_crud_floor.py`) on the same uvicorn, with as many workers and
    connections per worker."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "--app-dir",
            str(Path(__file__).parent),
            "_crud_floor:app",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env={**os.environ, "FLOOR_DATABASE_URL": url, "FLOOR_POOL": str(pool)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def floor_ready(port: int, timeout: float = 30) -> None:
    """Wait until the floor app answers (404 for a document that does not exist)."""
    conn = Conn("127.0.0.1", port, "/fhir/R4", "")
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = await conn.request("GET", f"/Patient/{uuid.uuid4()}")
            if status == 404:
                return
        except OSError:
            conn = Conn("127.0.0.1", port, "/fhir/R4", "")
        if time.monotonic() > deadline:
            raise RuntimeError("the floor app did not start")
        await asyncio.sleep(0.3)


def report(title: str, lat: dict[str, list[float]], errors: list[str], elapsed: float, cpu: str) -> float:
    """Print req/s and latency per operation; returns req/s."""
    total = sum(len(v) for v in lat.values())
    print(title)
    print(f"total {total} requests in {elapsed:.1f} s = {total / elapsed:,.0f} req/s; errors {len(errors)}")
    all_lat = [x for v in lat.values() for x in v]
    print(f"{'op':8} {'count':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for op in ("create", "read", "update", "delete"):
        v = lat[op]
        print(
            f"{op:8} {len(v):7d} {len(v) / elapsed:7.0f} "
            f"{pct(v, 0.5):8.1f} {pct(v, 0.95):8.1f} {pct(v, 0.99):8.1f}"
        )
    print(
        f"{'all':8} {total:7d} {total / elapsed:7.0f} {pct(all_lat, 0.5):8.1f} {pct(all_lat, 0.95):8.1f} "
        f"{pct(all_lat, 0.99):8.1f}"
    )
    print(cpu)
    if errors:
        print("first errors:", errors[:5])
    return total / elapsed


async def seed(url: str, paths: list[Path]) -> str:
    """Import ``paths`` (FHIR bundles) and ANALYZE, as a hospital's database holds records and
    autovacuum keeps its statistics; returns what was loaded."""
    db = Database(url, pool_size=2)
    started = time.perf_counter()
    try:
        await ensure_file_partitions(db, discover(paths))
        stats = await import_paths(db, paths, actor=Actor.system("bench", channel="cli"), jobs=2)
    finally:
        await db.dispose()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return f"seeded {stats.resources:,} resources in {time.perf_counter() - started:.1f} s"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--pool",
        type=int,
        default=8,
        help="DATABASE_MAX_CONNECTIONS per worker, also the floor's (default 8: 16 connections for this "
        "machine's 2 cores, as docs/runbooks.md sizes a pool; the setting's own default is 20)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="seconds of the same load before measuring (connections, statement caches and plans warm up)",
    )
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="synchronous_commit=off for the bench database: shows what WAL fsync costs (not for production)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the floor run (bench/_crud_floor.py)")
    parser.add_argument(
        "--seed",
        type=Path,
        nargs="*",
        default=[ROOT / "tests/data/fhir/synthea"],
        help="FHIR bundles imported before the load (default: the Synthea bundles in tests/data); "
        "--seed with no path starts from an empty database",
    )
    args = parser.parse_args()
    url = await fresh_database("hims_bench_fhir_crud")
    if args.seed:
        print(await seed(url, args.seed))
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA)
        if args.async_commit:
            name = await conn.fetchval("SELECT current_database()")
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await conn.close()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(url, port, args.workers, Path(tmp), args.pool)
        try:
            await wait_ready(f"http://127.0.0.1:{port}/fhir/R4")
            await wait_workers(server.pid, port, args.workers)
            token = await bench_token(Settings(hims_env="development"), url)
            measured = await load(port, token, args.users, args.duration, server.pid, args.warmup)
        finally:
            server.terminate()
            server.wait(timeout=30)
    mode = " (synchronous_commit=off)" if args.async_commit else ""
    title = (
        f"FHIR CRUD: {args.users} users, {args.duration:.0f} s, hims serve --workers {args.workers}, "
        f"{args.pool} connections per worker{mode}"
    )
    ours = report(title, *measured)
    print("goal: >= 1,000 req/s with p99 <= 100 ms (HAPI 3,755 req/s on 8 vCPU; Medplum 1,354 on 16 vCPU)")
    if args.no_floor:
        return
    port = free_port()
    floor_server = start_floor(url, port, args.workers, args.pool)
    try:
        await floor_ready(port)
        floor = report(
            f"\nfloor (bench/_crud_floor.py: Starlette + asyncpg, a document and its access-log row, "
            f"nothing else), --workers {args.workers}, {args.pool} connections per worker",
            *await load(port, "", args.users, args.duration, floor_server.pid, args.warmup),
        )
    finally:
        floor_server.terminate()
        floor_server.wait(timeout=30)
    print(f"\nhims serve reaches {ours / floor:.0%} of the floor's req/s ({ours:,.0f} vs {floor:,.0f})")


if __name__ == "__main__":
    asyncio.run(cleaning_up(main()))
