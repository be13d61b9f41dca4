"""Prometheus metrics (guide §5.1), multiprocess-safe.

With several uvicorn workers, `hims serve` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, so every metric below is written to shared files and `render()` aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DB_POOL_IN_USE = Gauge(
    "hims_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    ["role"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "hims_db_pool_size",
    "Configured database pool size.",
    ["role"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "hims_db_pool_waiting",
    "Requests waiting for a database connection (served first come, first served).",
    ["role"],
    multiprocess_mode="livesum",
)
APP_INFO = Gauge(
    "hims_app_info",
    "Application version (value is always 1).",
    ["version", "environment"],
    multiprocess_mode="max",
)
CONSULTATION_STARTED = Counter(
    "hims_consultation_started_total",
    "Consultations started (the guide's consultation.started).",
)


def content_type() -> str:
    """Content type of the exposition format."""
    return CONTENT_TYPE_LATEST


def render() -> bytes:
    """Every metric in the text exposition format, aggregated across worker processes."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (uvicorn child exit)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
