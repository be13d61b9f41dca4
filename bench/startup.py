"""Cold start to first 200: spawn `hims serve` and time until GET /health/ready answers 200.

Cases: embedded PostgreSQL with a fresh data directory (includes initdb), embedded warm
(existing data directory, cluster stopped), and external PostgreSQL (DATABASE_URL). Also the RSS
of one idle worker. Goals (issue 2): embedded <= 8 s, external <= 2 s.

    .venv/bin/python bench/startup.py [--runs 3] [--external postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

HIMS = str(Path(sys.executable).parent / "hims")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_once(data_dir: Path, database_url: str | None) -> tuple[float, int]:
    """Seconds from spawn to the first 200 of /health/ready, and the idle worker's RSS in bytes."""
    port = free_port()
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(HIMS_DATA_DIR=str(data_dir), LOG_LEVEL="warning", HIMS_ENV="development")
    if database_url:
        env["DATABASE_URL"] = database_url
    started = time.perf_counter()
    proc = subprocess.Popen(
        [HIMS, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"hims serve exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # idle
        rss = psutil.Process(proc.pid).memory_info().rss
        return elapsed, rss
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--external", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"embedded, fresh (initdb)": [], "embedded, warm": [], "external": []}
    rss: list[int] = []
    for _ in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="hims-bench-"))
        try:
            results["embedded, fresh (initdb)"].append(start_once(root, None)[0])
            results["embedded, warm"].append(start_once(root, None)[0])
        finally:
            shutil.rmtree(root, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix="hims-bench-"))
        try:
            seconds, worker_rss = start_once(root, args.external)
            results["external"].append(seconds)
            rss.append(worker_rss)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    goals = {"embedded, fresh (initdb)": 8.0, "embedded, warm": 8.0, "external": 2.0}
    external = statistics.median(results["external"])
    print(f"cold start to first 200 of /health/ready, median of {args.runs} runs")
    print(f"{'case':<26} {'median s':>9} {'min s':>7} {'max s':>7} {'goal s':>7} {'vs external':>12}")
    for case, values in results.items():
        median = statistics.median(values)
        ok = "ok" if median <= goals[case] else "MISSED"
        print(
            f"{case:<26} {median:>9.2f} {min(values):>7.2f} {max(values):>7.2f} "
            f"{goals[case]:>7.1f} {median / external:>11.2f}x  {ok}"
        )
    print(f"idle worker RSS (external, 1 worker): {statistics.median(rss) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
