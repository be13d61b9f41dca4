"""Who is calling: the `Actor`, access tokens, and the one dependency every route declares.

`require("patient:read")` authenticates the request (bearer access token, or the identity
domain's session cookie through the hook it installs), checks the permission and yields the
`Actor` that services take as ``actor=``. `require_public()` marks a route that needs no login;
both record the route's policy so a test can prove no route was forgotten. Routes served outside
FastAPI's dependencies (a route table, `hims.core.routetable`) call `authorize` themselves.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from fastapi import Depends, Request

from hims.core.errors import Forbidden, Unauthorized
from hims.core.permissions import PERMISSIONS, permissions_for
from hims.settings import Settings

ALGORITHM = "HS256"
ISSUER = "arocord-hims"
#: Where an actor came from, as the PHI access log records it: the REST API, the FHIR API (one
#: resource at a time, a bundle, or `hims fhir import`), the command line, the web UI, a job.
Channel = Literal["rest", "fhir", "bundle", "import", "cli", "ui", "job"]


@dataclass(frozen=True)
class Actor:
    """The authenticated caller and where the call came from (for the PHI access log)."""

    user_id: uuid.UUID | None
    username: str
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    client_ip: str | None = None
    request_id: str | None = None
    channel: Channel = "rest"
    token_id: str | None = None
    practitioner_id: uuid.UUID | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def can(self, permission: str) -> bool:
        """True when the actor holds ``permission``."""
        return permission in self.permissions

    @classmethod
    def system(
        cls,
        name: str,
        *,
        channel: Channel = "cli",
        user_id: uuid.UUID | None = None,
        roles: frozenset[str] = frozenset(),
    ) -> Actor:
        """An actor for CLI commands and jobs (all permissions unless roles are given)."""
        perms = permissions_for(roles) if roles else frozenset(PERMISSIONS)
        return cls(user_id=user_id, username=name, roles=roles, permissions=perms, channel=channel)


def encode_access_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    username: str,
    roles: list[str],
    token_id: str | None = None,
    extra: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> str:
    """A signed access token (HS256, lifetime JWT_EXPIRES_IN)."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(user_id),
        "name": username,
        "roles": sorted(roles),
        "typ": "access",
        "jti": token_id or uuid.uuid4().hex,
        "iat": issued,
        "nbf": issued - timedelta(seconds=5),
        "exp": issued + settings.jwt_expires_in,
        **(extra or {}),
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


#: Claims of tokens whose signature, algorithm, issuer and required claims were verified, by
#: (secret, token). Verifying costs more than the rest of authentication together, and a client
#: sends the same token for minutes; the time claims and the type are still checked on every use
#: (and revocation by the authenticator). Cleared when full.
_VERIFIED: dict[tuple[str, str], dict[str, Any]] = {}
_VERIFIED_MAX = 4096
_LEEWAY = 5


def decode_token(settings: Settings, token: str, *, expected_type: str) -> dict[str, Any]:
    """Verify signature, algorithm, issuer, time claims and token type; raise Unauthorized."""
    key = (settings.jwt_secret.get_secret_value(), token)
    verified = _VERIFIED.get(key)
    if verified is None:
        verified = _verify(settings, token)
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[key] = verified
    else:
        # What jwt.decode checks of the time claims, as it does it (integer seconds, leeway).
        now = time.time()
        if int(verified["exp"]) <= now - _LEEWAY:
            raise Unauthorized("The token has expired.", code="token_expired")
        if int(verified["nbf"]) > now + _LEEWAY or int(verified["iat"]) > now + _LEEWAY:
            raise Unauthorized("The token is not valid yet.", code="invalid_token")
    if verified.get("typ") != expected_type:
        raise Unauthorized("The token is of the wrong type.", code="invalid_token")
    return dict(verified)


def _verify(settings: Settings, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "nbf", "sub", "jti", "typ"]},
            leeway=_LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired.", code="token_expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("The token is not valid yet.", code="invalid_token") from None
    except jwt.PyJWTError:
        raise Unauthorized("The token is invalid.", code="invalid_token") from None
    return claims


#: Extra verification the identity domain installs (user still active, token not revoked, a
#: session cookie instead of a bearer token). Receives the request and the claims (None when the
#: request carries no bearer token) and returns the Actor, or raises Unauthorized.
Authenticator = Callable[[Request, dict[str, Any] | None], Awaitable["Actor | None"]]


def client_ip(request: Request) -> str | None:
    """The client address as seen by the app (uvicorn applies trusted proxy headers)."""
    return request.client.host if request.client else None


def request_channel(request: Request) -> Channel:
    """The channel a token-authenticated request came through: the FHIR API or the REST API."""
    return "fhir" if request.scope["path"].startswith("/fhir") else "rest"


async def authenticate(request: Request) -> Actor:
    """The Actor of this request, or Unauthorized."""
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    claims: dict[str, Any] | None = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "Use an `Authorization: Bearer <token>` header.",
                code="invalid_token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        claims = decode_token(settings, token.strip(), expected_type="access")
    hook: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if hook is not None:
        actor = await hook(request, claims)
        if actor is not None:
            return actor
    if claims is None:
        raise Unauthorized(
            "Authentication required.", code="not_authenticated", headers={"WWW-Authenticate": "Bearer"}
        )
    roles = frozenset(str(r) for r in claims.get("roles", []))
    return Actor(
        user_id=uuid.UUID(claims["sub"]),
        username=str(claims.get("name", "")),
        roles=roles,
        permissions=permissions_for(roles),
        client_ip=client_ip(request),
        request_id=getattr(request.state, "request_id", None),
        channel=request_channel(request),
        token_id=str(claims["jti"]),
    )


class Policy:
    """A route's declared access policy (read by the route-walking test)."""

    def __init__(self, permission: str | None) -> None:
        self.permission = permission


def check_permission_name(permission: str) -> str:
    """``permission`` when it is one of core.permissions, else ValueError (at import, not per request)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}; add it to core.permissions")
    return permission


async def authorize(request: Request, permission: str) -> Actor:
    """Authenticate the request and check ``permission``: the Actor, or Unauthorized / Forbidden."""
    return await permit(request, await authenticate(request), permission)


async def permit(request: Request, actor: Actor, permission: str) -> Actor:
    """``actor`` when it holds ``permission``, else Forbidden.

    A refusal goes to the app's ``on_forbidden`` hook (the identity domain's security event) first.
    """
    if not actor.can(permission):
        hook = getattr(request.app.state, "on_forbidden", None)
        if hook is not None:
            await hook(request, actor, permission)
        raise Forbidden(f"This action needs the {permission} permission.", code="permission_denied")
    return actor


def require(permission: str) -> Any:
    """Dependency: authenticate, check ``permission``, return the Actor."""
    check_permission_name(permission)

    async def dependency(request: Request) -> Actor:
        return await authorize(request, permission)

    dependency.hims_policy = Policy(permission)  # type: ignore[attr-defined]
    return Depends(dependency)


def require_public() -> Any:
    """Dependency marking a route as deliberately open (no login)."""

    async def dependency() -> None:
        return None

    dependency.hims_policy = Policy(None)  # type: ignore[attr-defined]
    return Depends(dependency)


def route_policy(dependant_calls: list[Callable[..., Any]]) -> Policy | None:
    """The Policy among a route's dependency callables, if any (used by tests and docs)."""
    for call in dependant_calls:
        policy = getattr(call, "hims_policy", None)
        if isinstance(policy, Policy):
            return policy
    return None
