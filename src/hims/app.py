"""`create_app()`: wires settings, resources, middleware, error handlers and routers."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI

from hims import __version__, composition
from hims.core import metrics, routetable
from hims.core.db import Database
from hims.core.errors import install_error_handlers, register_renderer
from hims.core.jobs import ArqQueue
from hims.core.kv import make_store
from hims.core.logging import RequestContextMiddleware, configure_logging
from hims.core.observability import init_observability
from hims.core.params import refuse_unknown_query
from hims.core.storage import make_storage
from hims.fhir import routes as fhir_routes
from hims.fhir.outcome import render_operation_outcome
from hims.identity import authn as identity_authn
from hims.ops import routes as ops_routes
from hims.settings import Settings, SettingsError, load_settings

log = structlog.get_logger("hims.app")


async def wait_for_database(app: FastAPI) -> None:
    """Retry the first connection with backoff so start-up survives a database that is late."""
    db: Database = app.state.db
    delay = 0.5
    while True:
        try:
            await db.ping()
        except Exception as exc:
            detail = str(exc).split("\n")[0][:200]
            log.warning(
                "database_unavailable",
                error=type(exc).__name__,
                detail="connection failed" if "://" in detail else detail,  # never a URL with a password
                retry_in_s=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        app.state.database_ready = True
        log.info("database_ready")
        return


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. Resources are created in the lifespan, never at import."""
    settings = settings or load_settings()
    if settings.database_url is None:
        raise RuntimeError("create_app needs DATABASE_URL; `hims serve` starts the embedded database")
    if settings.is_production and settings.problems():
        raise SettingsError(settings.problems())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url is not None
        redis_password = settings.redis_password.get_secret_value() if settings.redis_password else None
        queue = ArqQueue(settings.redis_url, redis_password) if settings.redis_url else None
        app.state.db = Database(
            settings.database_url.get_secret_value(),
            read_urls=settings.database_read_urls,
            pool_size=settings.database_max_connections,
            idle_timeout_ms=settings.database_idle_timeout,
            queue=queue,
        )
        app.state.kv = make_store(settings.redis_url, redis_password)
        app.state.storage = make_storage(settings)
        app.state.database_ready = False
        waiter = asyncio.create_task(wait_for_database(app))
        metrics.APP_INFO.labels(__version__, settings.hims_env).set(1)
        log.info("started", version=__version__, environment=settings.hims_env)
        try:
            yield
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            await app.state.kv.close()
            if queue is not None:
                await queue.close()
            await app.state.db.dispose()
            metrics.mark_process_dead(os.getpid())
            log.info("stopped")

    configure_logging(settings.log_level)
    app = FastAPI(
        title="AROCORD-HIMS",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if not settings.is_production else None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry bridge is off: OTEL_ENABLED instruments the app with the span
        # URL redacted (hims.core.observability), which this bridge would not do, and it checked
        # the global providers on every request (~2 % of a FHIR read's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    install_error_handlers(app)
    register_renderer("/fhir", render_operation_outcome)
    app.add_middleware(RequestContextMiddleware)
    composition.wire()
    app.state.merge_movers = composition.MERGE_MOVERS
    # The FHIR API is a route table served by Starlette, matched before anything else. FastAPI
    # then tries each included router's routes in turn, a few microseconds each, so the busiest
    # come first; no path belongs to two routers (tests/core/test_routes.py), so the order
    # changes what a request costs, never who answers it. Probes and scrapes come last.
    routetable.install(app, fhir_routes.TABLE)
    for router in composition.routers():
        # The REST API refuses query parameters a route does not declare (hims.core.params).
        rest = router.prefix.startswith("/api/")
        app.include_router(router, dependencies=[Depends(refuse_unknown_query)] if rest else None)
    identity_authn.install(app, settings)
    app.include_router(ops_routes.router)
    init_observability(app, settings)
    return app
