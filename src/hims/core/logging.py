"""structlog JSON logs, and the ASGI middleware that logs and measures each request.

The access log line carries the request id, method, route *template*, status and latency; it
never carries the raw path or query string, which may hold patient names or identifiers.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hims.core import errors, metrics

_REQUEST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def format_exception_safely(exc: BaseException) -> str:
    """Exception types and stack frames of the whole chain, without any exception message.

    Messages can carry patient data (``Key (mrn)=(...) already exists``, ``cannot find Okafor``);
    the type and the frames are what an engineer needs to find the bug.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.format_list(traceback.extract_tb(current.__traceback__))
        parts.append(f"{type(current).__module__}.{type(current).__qualname__}\n" + "".join(frames))
        current = current.__cause__ or current.__context__
    return "caused by ".join(reversed(parts)) if len(parts) > 1 else parts[0]


def _safe_exc_info(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        exc = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
        if exc is not None:
            event["exception"] = format_exception_safely(exc)
    return event


def _scrub_stdlib_messages(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Third-party log records (uvicorn, asyncio) keep their text but lose exception messages."""
    record = event.get("_record")
    if isinstance(record, logging.LogRecord) and record.exc_info:
        event["exc_info"] = record.exc_info
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (test capture and daemon redirection replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    """JSON lines on stderr through structlog; stdlib loggers (uvicorn, sqlalchemy) too."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, _safe_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _safe_exc_info, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _scrub_stdlib_messages],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, level.upper()))
    # uvicorn's access log prints raw paths (which may contain PHI); ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every outgoing URL at INFO; URLs to other systems can carry identifiers.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").propagate = True


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str):
        return str(scope.get("root_path", "")) + path
    return "<unmatched>"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")[:64]
            if text and all(ch in _REQUEST_ID_OK for ch in text):
                return text
    return None


class RequestContextMiddleware:
    """Request id, access log line and HTTP metrics for every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = structlog.get_logger("hims.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        response_started = False

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send_with_id(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            try:
                await self.app(scope, receive, send_tracked)
            except Exception as exc:
                # Rendered here, inside this middleware, so a 500 or a lost-database 503 carries
                # the request id header and is logged once, without the exception's message.
                if response_started:
                    raise
                error = errors.unexpected_error(exc)
                await errors.render(Request(scope), error)(scope, receive, send_tracked)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(elapsed)
            self.log.info(
                "request", method=method, route=route, status=status, latency_ms=round(elapsed * 1000, 2)
            )
            structlog.contextvars.unbind_contextvars("request_id")
