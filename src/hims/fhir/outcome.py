"""OperationOutcome bodies: every error under /fhir is rendered here."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from hims.core.errors import HimsError

FHIR_JSON = "application/fhir+json"

_ISSUE_CODE = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}


def outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """An OperationOutcome resource."""
    return {"resourceType": "OperationOutcome", "issue": issues}


def issue(
    severity: str,
    code: str,
    diagnostics: str,
    *,
    detail_code: str | None = None,
    expression: str | None = None,
) -> dict[str, Any]:
    """One OperationOutcome.issue (our stable error code goes into details.coding)."""
    item: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if detail_code:
        item["details"] = {
            "coding": [{"system": "https://hims.arocord.com/fhir/error-codes", "code": detail_code}],
            "text": diagnostics,
        }
    if expression:
        item["expression"] = [expression]
    return item


def error_outcome(error: HimsError) -> dict[str, Any]:
    """The OperationOutcome of an error."""
    code = _ISSUE_CODE.get(error.status, "exception")
    if error.code in ("invalid_reference", "invalid_date", "invalid_json"):
        code = "invalid"
    severity = "error" if error.status < 500 else "fatal"
    issues = [issue(severity, code, error.detail, detail_code=error.code)]
    for item in error.errors:
        issues.append(
            issue(
                "error",
                code,
                str(item.get("message", "")),
                detail_code=str(item.get("code", error.code)),
                expression=str(item.get("field")) if item.get("field") else None,
            )
        )
    return outcome(issues)


def render_operation_outcome(request: Request, error: HimsError) -> Response:
    """`hims.core.errors` renderer for the /fhir prefix."""
    return Response(
        orjson.dumps(error_outcome(error)),
        status_code=error.status,
        headers=error.headers,
        media_type=FHIR_JSON,
    )
