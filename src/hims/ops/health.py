"""Health checks (guide §5.1): database, Redis and external services, each timed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from hims.core.db import Database
from hims.core.kv import KeyValueStore, MemoryStore
from hims.settings import Settings

Status = Literal["healthy", "unhealthy", "not_configured"]
CHECK_TIMEOUT_S = 2.0


async def _timed(check: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"status": "unhealthy", "latency_ms": _ms(started), "error": "timed out"}
    except Exception as exc:
        return {"status": "unhealthy", "latency_ms": _ms(started), "error": _describe(exc)}
    return {"status": "healthy", "latency_ms": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _describe(exc: BaseException) -> str:
    """The error class and a message with no connection strings in it."""
    text = str(exc).split("\n")[0][:160]
    if "://" in text:
        text = "connection failed"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def check_database(db: Database) -> dict[str, Any]:
    """A round-trip to the primary."""
    return await _timed(db.ping)


async def check_redis(store: KeyValueStore) -> dict[str, Any]:
    """PING Redis; 'not_configured' for the in-process fallback."""
    if isinstance(store, MemoryStore):
        return {"status": "not_configured", "detail": "in-process fallback (single replica)"}
    return await _timed(store.ping)


async def check_smtp(settings: Settings) -> dict[str, Any]:
    """A TCP connection and SMTP greeting from SMTP_HOST."""
    if not settings.smtp_host:
        return {"status": "not_configured"}
    host, port = settings.smtp_host, settings.smtp_port

    async def greet() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            banner = await reader.readline()
            if not banner.startswith(b"220"):
                raise ConnectionError("unexpected SMTP greeting")
        finally:
            writer.close()

    return await _timed(greet)


async def check_storage(settings: Settings) -> dict[str, Any]:
    """The file store is writable (local) or configured (S3)."""
    if settings.storage_backend == "s3":
        return {"status": "healthy" if settings.storage_s3_bucket else "unhealthy", "backend": "s3"}
    root = settings.hims_data_dir / "files"

    async def writable() -> None:
        def probe() -> None:
            root.mkdir(parents=True, exist_ok=True)
            marker = Path(root, ".health")
            marker.write_text("ok", encoding="utf-8")
            marker.unlink()

        await asyncio.to_thread(probe)

    result = await _timed(writable)
    result["backend"] = "local"
    return result


async def detailed(settings: Settings, db: Database, store: KeyValueStore) -> tuple[bool, dict[str, Any]]:
    """Run every check concurrently; healthy when no critical check is unhealthy."""
    database, redis, smtp, storage = await asyncio.gather(
        check_database(db), check_redis(store), check_smtp(settings), check_storage(settings)
    )
    checks = {
        "database": database,
        "redis": redis,
        "externalServices": {
            "status": "unhealthy" if "unhealthy" in (smtp["status"], storage["status"]) else "healthy",
            "smtp": smtp,
            "storage": storage,
        },
    }
    # Mail and files failing degrade the service; database and Redis failing take it down.
    critical_ok = database["status"] == "healthy" and redis["status"] != "unhealthy"
    return critical_ok, checks
