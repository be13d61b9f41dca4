"""SMART-style scopes on top of our RBAC permissions.

The role's permission decides first (fhir:read / fhir:write / fhir:export). A token may also
carry a SMART ``scope`` claim (space separated, e.g. ``patient/*.read user/Observation.write``);
when it does, the request must also be allowed by one of those scopes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jwt
from fastapi import Request

from hims.core.errors import Forbidden

#: How permissions map to SMART scopes (docs/fhir.md renders the same table).
PERMISSION_SCOPES = {
    "fhir:read": ("user/*.read", "patient/*.read", "system/*.read"),
    "fhir:write": ("user/*.write", "patient/*.write", "system/*.write"),
    "fhir:export": ("system/*.read", "user/*.read"),
}


def token_scopes(request: Request) -> list[str] | None:
    """The token's SMART scopes, or None when the token has no scope claim.

    Only called after `require(...)` verified this very token (signature, expiry, type) in the same
    request, so the claims are read without verifying twice; results are cached per token.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    scopes = _scopes_of(token.strip())
    return list(scopes) if scopes is not None else None


@lru_cache(maxsize=4096)
def _scopes_of(token: str) -> tuple[str, ...] | None:
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Forbidden("The token cannot be read.", code="invalid_token") from None
    scope = claims.get("scope")
    return None if scope is None else tuple(str(scope).split())


def allows(scopes: list[str], resource_type: str, mode: str) -> bool:
    """True when one scope grants ``mode`` (read/write) on ``resource_type``."""
    for scope in scopes:
        context, _, rest = scope.partition("/")
        if context not in ("patient", "user", "system") or "." not in rest:
            continue
        rtype, _, access = rest.rpartition(".")
        if rtype not in ("*", resource_type):
            continue
        if (
            access in ("*", mode)
            or (mode == "read" and access in ("rs", "r", "s", "cruds"))
            or (mode == "write" and access in ("cud", "cruds", "c", "u", "d"))
        ):
            return True
    return False


def check_scope(request: Request, resource_type: str, mode: str) -> None:
    """403 when the token's scope claim does not allow ``mode`` on ``resource_type``."""
    scopes = token_scopes(request)
    if scopes is not None and not allows(scopes, resource_type, mode):
        raise Forbidden(
            f"The token's scopes do not allow {mode} on {resource_type}.", code="insufficient_scope"
        )
