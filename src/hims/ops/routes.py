"""Operational HTTP endpoints: health probes and Prometheus metrics."""

from __future__ import annotations

import hmac
import ipaddress
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hims import __version__
from hims.core import metrics
from hims.core.deps import DatabaseDep, SettingsDep, StoreDep
from hims.core.errors import Forbidden, Unauthorized
from hims.core.security import require_public
from hims.ops import health

# Health probes and metrics are open to load balancers and Prometheus; /metrics checks its own
# bearer token or network allow-list inside the handler.
router = APIRouter(tags=["operations"], dependencies=[require_public()])


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@router.get("/health")
async def health_basic() -> dict[str, Any]:
    """Liveness of the process with its version (guide §5.1); no dependencies are touched."""
    return {"status": "healthy", "timestamp": _now(), "version": __version__}


@router.get("/health/live")
async def health_live() -> dict[str, Any]:
    """Kubernetes liveness probe: the event loop answers."""
    return {"status": "healthy", "timestamp": _now()}


@router.get("/health/ready")
async def health_ready(db: DatabaseDep, store: StoreDep) -> Response:
    """Kubernetes readiness probe: 503 until the database (and Redis, if configured) answer."""
    database = await health.check_database(db)
    redis = await health.check_redis(store)
    ready = database["status"] == "healthy" and redis["status"] != "unhealthy"
    body = {
        "status": "ready" if ready else "not_ready",
        "timestamp": _now(),
        "checks": {"database": database["status"], "redis": redis["status"]},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/health/detailed")
async def health_detailed(settings: SettingsDep, db: DatabaseDep, store: StoreDep) -> Response:
    """Every dependency with status, latency and error text; 503 when a critical one fails."""
    ok, checks = await health.detailed(settings, db, store)
    body = {
        "status": "healthy" if ok else "unhealthy",
        "version": __version__,
        "checks": checks,
        "timestamp": _now(),
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(request: Request, settings: SettingsDep) -> Response:
    """Prometheus exposition; needs the METRICS_TOKEN bearer token or an allowed network."""
    token = settings.metrics_token
    header = request.headers.get("authorization", "")
    if token is not None and header.startswith("Bearer "):
        if not hmac.compare_digest(header[7:].encode(), token.get_secret_value().encode()):
            raise Unauthorized("Invalid metrics token.", code="invalid_token")
    elif not _client_allowed(request, settings.metrics_allow_networks):
        if token is not None:
            raise Unauthorized(
                "A bearer token is required for /metrics.",
                code="token_required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise Forbidden("This network may not read /metrics.", code="network_not_allowed")
    return Response(metrics.render(), media_type=metrics.content_type())


def _client_allowed(request: Request, networks: list[str]) -> bool:
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)
