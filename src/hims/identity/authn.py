"""The authenticator the identity domain installs on the app (`app.state.authenticator`).

For a bearer access token (already signature/time/type-checked by core) it adds: the token is
not revoked (jti or family), the user exists and is active, the token is not older than the last
password change; roles come from the account, not the token, so role changes apply at once.
Without a bearer token it accepts the browser session cookie, with a CSRF check on unsafe methods.
The user status is cached in the kv store for a few seconds and invalidated on every change.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any

from fastapi import Depends, FastAPI, Request

from hims.audit.service import record_phi_access
from hims.core.errors import Forbidden, Unauthorized
from hims.core.params import refuse_unknown_query
from hims.core.permissions import permissions_for
from hims.core.security import Actor, client_ip, request_channel
from hims.identity import service, tokens
from hims.settings import Settings

SESSION_COOKIE = "hims_session"
CSRF_COOKIE = "hims_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _status(request: Request, user_id: uuid.UUID, cached: str | None = None) -> service.UserStatus:
    if cached is not None:
        status = service.parse_status(user_id, cached)
    else:
        status = await service.load_status(
            session_factory=request.app.state.db.sessionmaker, kv=request.app.state.kv, user_id=user_id
        )
    if status is None or not status.active:
        raise Unauthorized("The account does not exist or is disabled.", code="invalid_token")
    return status


async def _csrf_token_sent(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached by Starlette; the route reads the same form
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def authenticator(request: Request, claims: dict[str, Any] | None) -> Actor | None:
    """Verify a bearer token's account and revocation state, or authenticate the session cookie."""
    kv = request.app.state.kv
    if claims is not None:
        user_id = uuid.UUID(claims["sub"])
        # One round trip: revocation markers and the cached account status together.
        revocations = tokens.revocation_keys(claims)
        *revoked, cached = await kv.get_many(*revocations, service.status_key(user_id))
        if any(value is not None for value in revoked):
            raise Unauthorized("The token has been revoked.", code="token_revoked")
        status = await _status(request, user_id, cached)
        if int(claims["iat"]) < status.tokens_valid_after:
            raise Unauthorized("The token predates a password change.", code="token_revoked")
        limited = claims.get(tokens.LIMIT_CLAIM) == tokens.MFA_ENROLMENT_SCOPE
        roles = frozenset() if limited else frozenset(status.roles)
        return Actor(
            user_id=status.user_id,
            username=status.username,
            roles=roles,
            # The enrolment-only token may manage its own account (enrol MFA, me, logout).
            permissions=frozenset({"self"}) if limited else permissions_for(roles),
            client_ip=client_ip(request),
            request_id=getattr(request.state, "request_id", None),
            channel=request_channel(request),
            token_id=str(claims["jti"]),
            practitioner_id=status.practitioner_id,
            extra={"exp": claims["exp"], "fam": claims.get("fam"), "limited": limited},
        )
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    browser = await tokens.read_session(kv, session_id)
    if browser is None:
        raise Unauthorized("The session has expired; log in again.", code="session_expired")
    if request.method not in SAFE_METHODS:
        sent = await _csrf_token_sent(request)
        if not sent or not hmac.compare_digest(sent.encode(), browser.csrf_token.encode()):
            raise Forbidden("Missing or wrong CSRF token.", code="csrf_failed")
    status = await _status(request, browser.user_id, await kv.get(service.status_key(browser.user_id)))
    roles = frozenset(status.roles)
    return Actor(
        user_id=status.user_id,
        username=status.username,
        roles=roles,
        permissions=permissions_for(roles),
        client_ip=client_ip(request),
        request_id=getattr(request.state, "request_id", None),
        channel="ui",
        practitioner_id=status.practitioner_id,
        extra={"session_id": session_id},
    )


async def on_forbidden(request: Request, actor: Actor, permission: str) -> None:
    """Record a refused permission check as a security event (its own small transaction).

    When a REST route names a patient, the attempt also goes into the PHI access log with outcome
    ``denied``, where compliance reviews who tried to open which record (the FHIR API logs its
    own refusals, with the resource they were about: `hims.fhir.routes.log_denied`).
    """
    rest = request.url.path.startswith(request.app.state.settings.api_prefix + "/")
    patient_id = _patient_in_path(request) if rest else None
    async with request.app.state.db.transaction() as session:
        if patient_id is not None:
            await record_phi_access(
                session=session,
                actor=actor,
                action="read" if request.method in ("GET", "HEAD") else "write",
                resource_type="Patient",
                accesses=[(patient_id, str(patient_id))],
                outcome="denied",
            )
        await service.record_event(
            session=session,
            event="access_denied",
            outcome="denied",
            user_id=actor.user_id,
            username=actor.username,
            actor=actor,
            detail={"permission": permission, "method": request.method, "path": request.url.path},
        )


def _patient_in_path(request: Request) -> uuid.UUID | None:
    raw = request.path_params.get("patient_id")
    try:
        return uuid.UUID(str(raw)) if raw is not None else None
    except ValueError:
        return None


def install(app: FastAPI, settings: Settings) -> None:
    """Install the authenticator, the 403 hook and the identity routers on ``app``."""
    from hims.identity import routes

    app.state.authenticator = authenticator
    app.state.on_forbidden = on_forbidden
    strict = [Depends(refuse_unknown_query)]
    app.include_router(routes.auth_router, prefix=settings.api_prefix, dependencies=strict)
    app.include_router(routes.users_router, prefix=settings.api_prefix, dependencies=strict)
