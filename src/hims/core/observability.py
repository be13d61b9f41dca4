"""Optional integrations: Sentry (``[sentry]`` extra, SENTRY_DSN) and OpenTelemetry (``[otel]``).

Both are off unless configured; configured but not installed is one clear log line, not a crash.
Nothing that may hold PHI leaves the process: Sentry gets no request bodies, query strings,
cookies or exception messages.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import structlog
from fastapi import FastAPI

from hims import __version__
from hims.core.errors import UNEXPECTED_ERROR_HOOKS
from hims.settings import Settings

log = structlog.get_logger("hims.observability")


def installed(module: str) -> bool:
    """True when ``module`` can be imported (its parent packages included)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _scrub(event: dict[str, Any], _hint: Any) -> dict[str, Any]:
    request = event.get("request") or {}
    for key in ("query_string", "data", "cookies"):
        request.pop(key, None)
    if "url" in request:
        request["url"] = "<redacted>"
    for exc in (event.get("exception") or {}).get("values", []):
        exc["value"] = "<redacted>"
        for frame in (exc.get("stacktrace") or {}).get("frames", []):
            frame.pop("vars", None)
    event.pop("breadcrumbs", None)
    return event


#: Span attributes that carry the raw path or query (names, MRNs); `http.route` keeps the template.
_URL_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.path", "url.query")


def _redact_span_url(span: Any, _scope: dict[str, Any]) -> None:
    if span is not None and span.is_recording():
        for name in _URL_ATTRIBUTES:
            span.set_attribute(name, "<redacted>")


def init_observability(app: FastAPI, settings: Settings) -> list[str]:
    """Turn on what is configured and installed; returns the names of what is enabled."""
    enabled: list[str] = []
    if settings.sentry_dsn is not None:
        if not installed("sentry_sdk"):
            log.warning(
                "sentry_unavailable",
                detail="SENTRY_DSN is set but sentry-sdk is not installed: "
                "pip install 'arocord-hims[sentry]'",
            )
        else:
            import sentry_sdk

            sentry_sdk.init(
                dsn=settings.sentry_dsn.get_secret_value(),
                environment=settings.hims_env,
                release=__version__,
                send_default_pii=False,
                # Local variables of a request's frames hold query values, bodies, rows: PHI.
                include_local_variables=False,
                max_breadcrumbs=0,
                before_send=_scrub,
            )
            if sentry_sdk.capture_exception not in UNEXPECTED_ERROR_HOOKS:
                UNEXPECTED_ERROR_HOOKS.append(sentry_sdk.capture_exception)
            enabled.append("sentry")
    if settings.otel_enabled:
        if not installed("opentelemetry.instrumentation.fastapi"):
            log.warning(
                "otel_unavailable",
                detail="OTEL_ENABLED is set but OpenTelemetry is not installed: "
                "pip install 'arocord-hims[otel]'",
            )
        else:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.instrument_app(
                app, excluded_urls="health,metrics", server_request_hook=_redact_span_url
            )
            enabled.append("otel")
    if enabled:
        log.info("observability_enabled", integrations=enabled)
    return enabled
