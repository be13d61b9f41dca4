"""One error hierarchy, rendered once.

Services raise these anywhere; `install_error_handlers` turns them into
``application/problem+json`` bodies (RFC 9457) with a stable ``code``. Other surfaces (FHIR)
register their own renderer for a path prefix, so core never imports a domain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

log = structlog.get_logger("hims.errors")

PROBLEM_JSON = "application/problem+json"


class HimsError(Exception):
    """Base of every error a client may see."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        if code:
            self.code = code
        self.errors = list(errors or [])
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.detail)


class BadRequest(HimsError):
    status, code, title = 400, "bad_request", "Bad request"


class Unauthorized(HimsError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(HimsError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(HimsError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(HimsError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(HimsError):
    status, code, title = 409, "conflict", "Conflict"


class Gone(HimsError):
    status, code, title = 410, "gone", "Gone"


class PreconditionFailed(HimsError):
    status, code, title = 412, "precondition_failed", "Precondition failed"


class PayloadTooLarge(HimsError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(HimsError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(HimsError):
    status, code, title = 422, "validation_failed", "Validation failed"


class TooManyRequests(HimsError):
    status, code, title = 429, "too_many_requests", "Too many requests"


class ServiceUnavailable(HimsError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


def field_error(field: str, message: str, code: str = "invalid") -> dict[str, Any]:
    """One entry of ``errors`` in a 422 body."""
    return {"field": field, "message": message, "code": code}


Renderer = Callable[[Request, HimsError], Response]


def problem_response(request: Request, error: HimsError) -> Response:
    """The default rendering: an RFC 9457 problem body."""
    body: dict[str, Any] = {
        "type": f"https://hims.arocord.com/problems/{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        **error.extra,
    }
    if error.errors:
        body["errors"] = error.errors
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=error.status, headers=error.headers, media_type=PROBLEM_JSON)


_renderers: dict[str, Renderer] = {}


def register_renderer(path_prefix: str, renderer: Renderer) -> None:
    """Render errors under ``path_prefix`` with ``renderer`` (e.g. OperationOutcome for /fhir)."""
    _renderers[path_prefix] = renderer


def render(request: Request, error: HimsError) -> Response:
    """Pick the renderer for the request's path."""
    for prefix, renderer in _renderers.items():
        if request.url.path.startswith(prefix):
            return renderer(request, error)
    return problem_response(request, error)


def _validation_error(exc: RequestValidationError) -> HimsError:
    errors = []
    for item in exc.errors():
        loc = [str(p) for p in item.get("loc", ())]
        if item.get("type") == "json_invalid":
            # 422 like every other body that cannot be processed (the FHIR API answers 400 for an
            # unparseable resource, as its spec says; it parses its own bodies).
            return ValidationFailed("The request body is not valid JSON.", code="invalid_json")
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) if len(loc) > 1 else where
        errors.append(
            {
                "field": field,
                "in": where,
                "message": item.get("msg", "invalid"),
                "code": str(item.get("type", "invalid")),
            }
        )
    return ValidationFailed("The request has invalid fields.", errors=errors)


def is_connection_error(exc: BaseException) -> bool:
    """True for database errors that mean 'the server is unreachable', not 'your query is wrong'."""
    if isinstance(exc, PoolTimeoutError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, InterfaceError | OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # The driver's own errors arrive bare (statements sent straight to asyncpg), wrapped by
    # SQLAlchemy (.orig) or by its asyncpg adapter (__cause__).
    causes = (exc, getattr(exc, "orig", None), exc.__cause__)
    names = {type(cause).__name__ for cause in causes if cause is not None}
    return not names.isdisjoint(
        {
            "ConnectionDoesNotExistError",
            "CannotConnectNowError",
            "ConnectionFailureError",
            "AdminShutdownError",
            "InterfaceError",
            "TooManyConnectionsError",
        }
    )


def is_retryable_conflict(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure: two transactions collided; a retry succeeds."""
    causes = (exc, getattr(exc, "orig", None), exc.__cause__)
    codes = {getattr(cause, "sqlstate", None) for cause in causes if cause is not None}
    return not codes.isdisjoint({"40P01", "40001"})


#: Called with every unexpected (500) exception; error trackers (Sentry) register here because the
#: request middleware renders the 500 itself and the exception never reaches the ASGI server.
UNEXPECTED_ERROR_HOOKS: list[Callable[[BaseException], object]] = []


def unexpected_error(exc: BaseException) -> HimsError:
    """The client-safe error for an exception nobody handled: 503 for a lost database, else 500.

    Logged with the exception type and stack but never its message (messages can carry PHI,
    e.g. a unique-violation DETAIL).
    """
    if is_connection_error(exc):
        log.warning("database_unavailable", error=type(exc).__name__)
        return ServiceUnavailable(
            "The database is unavailable; try again shortly.",
            code="database_unavailable",
            headers={"Retry-After": "5"},
        )
    if is_retryable_conflict(exc):
        log.warning("transaction_collision", error=type(exc).__name__)
        return Conflict(
            "Another request changed the same records at the same moment; nothing was saved. Retry.",
            code="concurrent_update",
            headers={"Retry-After": "1"},
        )
    log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
    for hook in UNEXPECTED_ERROR_HOOKS:
        try:
            hook(exc)
        except Exception as hook_error:  # a broken tracker must not turn a 500 into a crash
            log.warning("error_hook_failed", error=type(hook_error).__name__)
    return HimsError("An unexpected error occurred; it has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers so every error leaves the app rendered the same way."""

    async def on_hims_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HimsError)
        return render(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render(request, _validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        mapping: dict[int, type[HimsError]] = {
            400: BadRequest,
            401: Unauthorized,
            403: Forbidden,
            404: NotFound,
            405: MethodNotAllowed,
            413: PayloadTooLarge,
            415: UnsupportedMediaType,
        }
        cls = mapping.get(exc.status_code)
        if cls is None:
            error = HimsError(str(exc.detail))
            error.status = exc.status_code
            error.code = f"http_{exc.status_code}"
        else:
            detail = (
                exc.detail if exc.detail and exc.detail not in ("Not Found", "Method Not Allowed") else None
            )
            error = cls(detail or _default_detail(cls, request))
        if exc.headers:
            error.headers.update(exc.headers)
        return render(request, error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return render(request, unexpected_error(exc))

    app.add_exception_handler(HimsError, on_hims_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _default_detail(cls: type[HimsError], request: Request) -> str:
    if cls is NotFound:
        return "No resource at this address."
    if cls is MethodNotAllowed:
        return f"{request.method} is not allowed here."
    return cls.title
