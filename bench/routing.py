"""CPU per request of FHIR CRUD and REST requests, in process: this checkout against a baseline.

Drives the ASGI app directly (a prepared scope, no network, no HTTP client) through FHIR
metadata, read, create, update and delete and two REST GETs: `/api/v1/patients/{id}` (the second
included router) and `/api/v1/auth/me` (the last). Each side runs in a process of its own, the
baseline importing `hims` from `git archive REF src`. For each operation the two sides take
turns (ABBA), `--requests` requests at a time; a figure is the process's CPU time
(`time.process_time`) per request, median of the rounds, and the change is the median of the
ratios of turns taken back to back. CPU time moves less than wall time with other load on the
machine, but it moves: run it on a quiet machine, or with more rounds. The Python function calls
per request (counted with `sys.setprofile`, 20 requests) do not move with load. PostgreSQL's CPU
is another process's and is not counted.

    .venv/bin/python bench/routing.py                  # baseline: merge-base of HEAD and main
    .venv/bin/python bench/routing.py --baseline f2920b7 --rounds 20 --requests 400
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = (
    "FHIR metadata",
    "FHIR read",
    "FHIR create",
    "FHIR update",
    "FHIR delete",
    "REST GET patient",
    "REST GET auth/me",
)


# ---------------------------------------------------------------- child: one side, in process


class Caller:
    """Calls an ASGI app with a prepared HTTP scope and collects the status."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.auth = (b"authorization", f"Bearer {token}".encode())

    async def __call__(
        self, method: str, path: str, body: bytes = b"", *, auth: bool = True
    ) -> tuple[int, bytes]:
        """``method path`` with the bench user's token; returns the status and the body."""
        headers = [(b"host", b"bench"), (b"content-type", b"application/fhir+json")]
        if auth:
            headers.append(self.auth)
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("bench", 80),
        }
        done = asyncio.Event()
        sent_body = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    done.set()

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def person() -> dict[str, Any]:
    """A Patient unlike any other: random names and birth date, so duplicate checks let it in."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    born = datetime.date(1920, 1, 1) + datetime.timedelta(days=random.randrange(36_000))
    return {
        "resourceType": "Patient",
        "name": [
            {
                "family": "".join(random.choices(letters, k=10)).title(),
                "given": ["".join(random.choices(letters, k=8)).title()],
            }
        ],
        "gender": random.choice(["male", "female"]),
        "birthDate": born.isoformat(),
    }


class Operations:
    """The measured operations of one side; creates keep their ids for the updates and deletes."""

    def __init__(self, call: Caller, pid: str) -> None:
        self.call = call
        self.pid = pid
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.updated: list[str] = []

    async def measure(self, name: str, requests: int) -> float:
        """CPU µs per request of ``requests`` of operation ``name``."""
        expected, make = {
            "FHIR metadata": (200, lambda: self.call("GET", "/fhir/R4/metadata", auth=False)),
            "FHIR read": (200, lambda: self.call("GET", f"/fhir/R4/Patient/{self.pid}")),
            "FHIR create": (201, self._create),
            "FHIR update": (200, self._update),
            "FHIR delete": (204, self._delete),
            "REST GET patient": (200, lambda: self.call("GET", f"/api/v1/patients/{self.pid}")),
            "REST GET auth/me": (200, lambda: self.call("GET", "/api/v1/auth/me")),
        }[name]
        start = time.process_time()
        for _ in range(requests):
            status, body = await make()
            if status != expected:
                raise RuntimeError(f"{name}: {status} {body[:300]!r}")
        return (time.process_time() - start) / requests * 1e6

    async def count_calls(self, name: str, requests: int) -> float:
        """Python function calls per request of operation ``name``: unlike time, the same on a
        busy machine as on an idle one."""
        calls = 0

        def profile(_frame: Any, event: str, _arg: Any) -> None:
            nonlocal calls
            calls += event == "call"

        sys.setprofile(profile)
        try:
            await self.measure(name, requests)
        finally:
            sys.setprofile(None)
        return calls / requests

    async def _create(self) -> tuple[int, bytes]:
        resource = person()
        status, body = await self.call("POST", "/fhir/R4/Patient", json.dumps(resource).encode())
        if status == 201:
            self.created.append((json.loads(body)["id"], resource))
        return status, body

    async def _update(self) -> tuple[int, bytes]:
        rid, resource = self.created.pop()
        self.updated.append(rid)
        other = "female" if resource["gender"] == "male" else "male"
        body = json.dumps({**resource, "id": rid, "gender": other}).encode()
        return await self.call("PUT", f"/fhir/R4/Patient/{rid}", body)

    async def _delete(self) -> tuple[int, bytes]:
        return await self.call("DELETE", f"/fhir/R4/Patient/{self.updated.pop()}")


async def _child(requests: int) -> None:
    from pydantic import SecretStr

    from _fhir_common import cleaning_up, fresh_database
    from benchauth import bench_token
    from hims.app import create_app
    from hims.settings import Settings

    async def main() -> None:
        url = await fresh_database("bench_routing")
        settings = Settings(
            database_url=SecretStr(url),
            hims_env="development",
            log_level="warning",
            redis_url=None,
            hims_data_dir=Path(tempfile.mkdtemp(prefix="bench-routing-")),
            database_max_connections=4,
        )
        token = await bench_token(settings, url)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            call = Caller(app, token)
            status, body = await call("POST", "/fhir/R4/Patient", json.dumps(person()).encode())
            if status != 201:
                raise RuntimeError(f"seed: {status} {body[:300]!r}")
            operations = Operations(call, json.loads(body)["id"])
            for name in OPERATIONS:  # warm up: pools, caches, plans
                await operations.measure(name, max(requests // 4, 20))
            print("ready", flush=True)
            for line in sys.stdin:
                command, _, name = line.strip().partition(" ")
                if command == "calls":
                    figure = await operations.count_calls(name, 20)
                else:
                    figure = await operations.measure(name, requests)
                print(json.dumps(figure), flush=True)

    await cleaning_up(main())


# ---------------------------------------------------------------- parent: alternate the two sides


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _export(ref: str, into: Path) -> None:
    """The ``src`` tree of ``ref`` under ``into``."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


class Side:
    """One child process serving rounds of measurements."""

    def __init__(self, name: str, src: Path, requests: int) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", "--requests", str(requests)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.rounds: list[dict[str, float]] = []
        self.calls: dict[str, float] = {}

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} process ended (its stderr is above)")
        return line.strip()

    def wait_ready(self) -> None:
        """Block until the child has set up its database and warmed up."""
        while self._line() != "ready":
            pass

    def run(self, operation: str, number: int) -> None:
        """Round ``number`` of ``operation``."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"time {operation}\n")
        self.process.stdin.flush()
        if number == len(self.rounds):
            self.rounds.append({})
        self.rounds[number][operation] = json.loads(self._line())

    def count_calls(self, operation: str) -> None:
        """Python calls per request of ``operation``."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"calls {operation}\n")
        self.process.stdin.flush()
        self.calls[operation] = json.loads(self._line())

    def close(self) -> None:
        """Let the child drop its database and exit."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)

    def median(self, operation: str) -> float:
        """Median CPU µs per request of ``operation`` over the rounds."""
        return statistics.median(r[operation] for r in self.rounds)


def main() -> None:
    """Parse arguments; run as the parent or as one side's child process."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", help="git ref to compare with (default: merge-base of HEAD and main)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=200, help="requests per operation per round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.requests))
        return

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    ref = args.baseline or _git("merge-base", "HEAD", "main")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--", "src") else ""
    with tempfile.TemporaryDirectory(prefix="bench-routing-baseline-") as tmp:
        _export(ref, Path(tmp))
        sides = [
            Side(f"baseline {_git('rev-parse', '--short', ref)}", Path(tmp) / "src", args.requests),
            Side(f"this {_git('rev-parse', '--short', 'HEAD')}{dirty}", ROOT / "src", args.requests),
        ]
        try:
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("setting up", total=args.rounds * len(OPERATIONS))
                for side in sides:
                    side.wait_ready()
                progress.update(task, description="measuring")
                for number in range(args.rounds):
                    for index, operation in enumerate(OPERATIONS):
                        # ABBA: each side goes first as often as the other.
                        for side in sides if (number + index) % 2 == 0 else reversed(sides):
                            side.run(operation, number)
                        progress.advance(task)
                for operation in OPERATIONS:
                    for side in sides:
                        side.count_calls(operation)
        finally:
            for side in sides:
                side.close()

    baseline, current = sides
    table = Table(title=f"CPU µs per request, median of {args.rounds} rounds of {args.requests} requests")
    table.add_column("operation")
    table.add_column(baseline.name, justify="right")
    table.add_column(current.name, justify="right")
    table.add_column("change", justify="right")
    table.add_column("Python calls", justify="right")
    for operation in OPERATIONS:
        # Rounds k of the two sides ran back to back: their ratio compares them under the same load.
        change = statistics.median(
            b[operation] / a[operation] - 1 for a, b in zip(baseline.rounds, current.rounds, strict=True)
        )
        before, after = baseline.median(operation), current.median(operation)
        calls = f"{baseline.calls[operation]:.0f} → {current.calls[operation]:.0f}"
        table.add_row(operation, f"{before:.0f}", f"{after:.0f}", f"{change * 100:+.1f} %", calls)
    console.print(table)


if __name__ == "__main__":
    main()
