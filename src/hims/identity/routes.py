"""HTTP endpoints of the identity domain (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

import orjson
import structlog
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from hims.core.deps import DatabaseDep, SessionDep, SettingsDep, StoreDep
from hims.core.errors import Forbidden, HimsError, ServiceUnavailable, ValidationFailed
from hims.core.security import Actor, client_ip, require, require_public
from hims.identity import authn, mail, mfa, service, tokens
from hims.identity.models import User
from hims.identity.schemas import (
    LoginRequest,
    LogoutRequest,
    Me,
    MfaConfirm,
    MfaEnrolment,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RolesUpdate,
    SecurityEventRead,
    SessionCreated,
    TokenResponse,
    UserCreate,
    UserRead,
    UserSummary,
)

log = structlog.get_logger("hims.identity")
ModelT = TypeVar("ModelT", bound=BaseModel)

auth_router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(tags=["users"])

SelfActor = Annotated[Actor, require("self")]
UserReader = Annotated[Actor, require("user:read")]
UserAdmin = Annotated[Actor, require("user:admin")]
AuditReader = Annotated[Actor, require("audit:read")]


def _client(request: Request) -> service.Client:
    return service.Client(ip=client_ip(request), request_id=getattr(request.state, "request_id", None))


def _token_response(result: service.LoginResult) -> TokenResponse:
    assert result.pair is not None
    return TokenResponse(
        access_token=result.pair.access_token,
        refresh_token=result.pair.refresh_token,
        expires_in=result.pair.expires_in,
        mfa_enrolment_required=result.mfa_enrolment_required,
    )


# ------------------------------------------------------------------ tokens


@auth_router.post("/login", dependencies=[require_public()])
async def login(
    body: LoginRequest, request: Request, db: DatabaseDep, kv: StoreDep, settings: SettingsDep
) -> TokenResponse:
    """Username + password (+ TOTP or recovery code when enrolled) → access and refresh tokens."""
    # Own transaction: a failed login's security event must commit although we answer 401.
    async with db.transaction() as session:
        result = await service.login(
            session=session,
            kv=kv,
            settings=settings,
            username=body.username,
            password=body.password,
            totp=body.totp,
            client=_client(request),
        )
    if result.error is not None:
        raise result.error
    return _token_response(result)


@auth_router.post("/refresh", dependencies=[require_public()])
async def refresh(
    body: RefreshRequest, request: Request, db: DatabaseDep, kv: StoreDep, settings: SettingsDep
) -> TokenResponse:
    """Rotate a refresh token (each works once; reuse revokes the family)."""
    async with db.transaction() as session:
        result = await service.refresh(
            session=session,
            kv=kv,
            settings=settings,
            refresh_token=body.refresh_token,
            client=_client(request),
        )
    if result.error is not None:
        raise result.error
    return _token_response(result)


async def _json_or_form(request: Request) -> dict[str, Any]:
    """The body as a dict, from JSON or a form post (browser forms carry the CSRF field)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        raw = await request.body()
        if not raw:
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ValidationFailed("The request body is not valid JSON.", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ValidationFailed("The body must be a JSON object.", code="validation_failed")
        return data
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str) and k != authn.CSRF_FIELD}
    return {}


def _parse(model: type[ModelT], raw: dict[str, Any]) -> ModelT:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "body",
                "in": "body",
                "message": e["msg"],
                "code": e["type"],
            }
            for e in exc.errors()
        ]
        raise ValidationFailed("The request has invalid fields.", errors=errors) from None


@auth_router.post("/logout", status_code=204)
async def logout(
    request: Request, actor: SelfActor, session: SessionDep, kv: StoreDep, settings: SettingsDep
) -> Response:
    """Revoke the access token and its refresh family (JSON `refresh_token` optional) or end the
    browser session and clear its cookies."""
    body = _parse(LogoutRequest, await _json_or_form(request))
    await service.logout(
        session=session, kv=kv, settings=settings, actor=actor, refresh_token=body.refresh_token
    )
    response = Response(status_code=204)
    if actor.extra.get("session_id"):
        response.delete_cookie(authn.SESSION_COOKIE, path="/")
        response.delete_cookie(authn.CSRF_COOKIE, path="/")
    return response


def _me(view: service.MeView) -> Me:
    return Me.model_validate(
        {
            **UserRead.model_validate(view.user).model_dump(),
            "permissions": view.permissions,
            "mfa_required": view.mfa_required,
        }
    )


@auth_router.get("/me")
async def read_me(actor: SelfActor, session: SessionDep, settings: SettingsDep) -> Me:
    """The caller's account and effective permissions."""
    return _me(await service.describe_me(session=session, settings=settings, actor=actor))


# ------------------------------------------------------------------ browser sessions


@auth_router.post("/session", dependencies=[require_public()])
async def create_session(
    request: Request, db: DatabaseDep, kv: StoreDep, settings: SettingsDep
) -> JSONResponse:
    """Browser login (form or JSON): sets the HttpOnly session cookie; returns the CSRF token."""
    body = _parse(LoginRequest, await _json_or_form(request))
    async with db.transaction() as session:
        result = await service.login(
            session=session,
            kv=kv,
            settings=settings,
            username=body.username,
            password=body.password,
            totp=body.totp,
            client=_client(request),
        )
    if result.error is not None:
        raise result.error
    assert result.user is not None
    if result.mfa_enrolment_required:
        raise Forbidden(
            "This account must enrol MFA first: log in through /api/v1/auth/login to enrol.",
            code="mfa_enrolment_required",
        )
    session_id, csrf = await tokens.create_session(kv, settings, user_id=result.user.id)
    payload = SessionCreated(csrf_token=csrf, user=UserSummary.model_validate(result.user))
    response = JSONResponse(payload.model_dump(mode="json"))
    secure = settings.hims_env not in ("development", "test")
    max_age = int(settings.session_ttl.total_seconds())
    response.set_cookie(
        authn.SESSION_COOKIE,
        session_id,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=secure,
        samesite="lax",
    )
    # Readable by the page so htmx can echo it in X-CSRF-Token (the server checks the session's copy).
    response.set_cookie(
        authn.CSRF_COOKIE, csrf, max_age=max_age, path="/", httponly=False, secure=secure, samesite="lax"
    )
    return response


# ------------------------------------------------------------------ passwords


@auth_router.post("/password")
async def change_password(
    body: PasswordChange, actor: SelfActor, session: SessionDep, kv: StoreDep, settings: SettingsDep
) -> TokenResponse:
    """Change one's own password; earlier tokens stop working, a fresh pair is returned."""
    pair = await service.change_password(
        session=session,
        kv=kv,
        settings=settings,
        actor=actor,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    return TokenResponse(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@auth_router.post("/password-reset", status_code=202, dependencies=[require_public()])
async def request_password_reset(
    body: PasswordResetRequest, request: Request, db: DatabaseDep, kv: StoreDep, settings: SettingsDep
) -> dict[str, str]:
    """E-mail a single-use reset link; answers the same whether or not the account exists."""
    if not settings.smtp_host:
        raise ServiceUnavailable("E-mail is not configured (SMTP_HOST).", code="smtp_not_configured")
    async with db.transaction() as session:
        message = await service.request_password_reset(
            session=session, kv=kv, settings=settings, login=body.login, client=_client(request)
        )
    if message is not None:
        try:
            await mail.send_mail(settings, to=message.to, subject=message.subject, body=message.body)
        except HimsError:
            log.warning("password_reset_mail_failed")  # same answer: do not reveal the account
    return {
        "status": "accepted",
        "detail": "If the account exists and has an e-mail address, a link is on its way.",
    }


@auth_router.post("/password-reset/confirm", status_code=204, dependencies=[require_public()])
async def confirm_password_reset(
    body: PasswordResetConfirm, request: Request, session: SessionDep, kv: StoreDep, settings: SettingsDep
) -> None:
    """Set a new password with the token from the e-mail (works once, within PASSWORD_RESET_TTL)."""
    await service.confirm_password_reset(
        session=session,
        kv=kv,
        settings=settings,
        token=body.token,
        new_password=body.new_password,
        client=_client(request),
    )


# ------------------------------------------------------------------ MFA


@auth_router.post("/mfa/enrol")
async def start_mfa(actor: SelfActor, session: SessionDep, kv: StoreDep) -> MfaEnrolment:
    """Start TOTP enrolment: otpauth URI, QR code (SVG) and recovery codes, shown once."""
    uri, codes = await service.start_mfa_enrolment(session=session, kv=kv, actor=actor)
    return MfaEnrolment(otpauth_uri=uri, qr_svg=mfa.qr_svg(uri), recovery_codes=codes)


@auth_router.post("/mfa/confirm")
async def confirm_mfa(body: MfaConfirm, actor: SelfActor, session: SessionDep, kv: StoreDep) -> UserRead:
    """Finish enrolment with a current code; from now on login needs a code."""
    user = await service.confirm_mfa_enrolment(session=session, kv=kv, actor=actor, code=body.code)
    return UserRead.model_validate(user)


# ------------------------------------------------------------------ user administration


def _read(user: User) -> UserRead:
    return UserRead.model_validate(user)


@users_router.get("/users")
async def list_users(
    actor: UserReader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    active: bool | None = None,
) -> list[UserSummary]:
    """Staff accounts."""
    users = await service.list_users(session=session, actor=actor, limit=limit, offset=offset, active=active)
    return [UserSummary.model_validate(u) for u in users]


@users_router.post("/users", status_code=201)
async def create_user(
    body: UserCreate, actor: UserAdmin, session: SessionDep, settings: SettingsDep
) -> UserRead:
    """Create a staff account (admins only; the first admin comes from `hims users create`)."""
    return _read(await service.create_user(session=session, settings=settings, actor=actor, data=body))


@users_router.get("/users/{user_id}")
async def get_user(user_id: uuid.UUID, actor: UserReader, session: SessionDep) -> UserRead:
    """One staff account."""
    return _read(await service.get_user(session=session, actor=actor, user_id=user_id))


@users_router.post("/users/{user_id}/disable")
async def disable_user(user_id: uuid.UUID, actor: UserAdmin, session: SessionDep, kv: StoreDep) -> UserRead:
    """Disable an account: its tokens and sessions stop working at once."""
    return _read(await service.set_active(session=session, kv=kv, actor=actor, user_id=user_id, active=False))


@users_router.post("/users/{user_id}/enable")
async def enable_user(user_id: uuid.UUID, actor: UserAdmin, session: SessionDep, kv: StoreDep) -> UserRead:
    """Re-enable an account."""
    return _read(await service.set_active(session=session, kv=kv, actor=actor, user_id=user_id, active=True))


@users_router.put("/users/{user_id}/roles")
async def set_roles(
    user_id: uuid.UUID, body: RolesUpdate, actor: UserAdmin, session: SessionDep, kv: StoreDep
) -> UserRead:
    """Replace an account's roles."""
    return _read(
        await service.set_roles(session=session, kv=kv, actor=actor, user_id=user_id, roles=body.roles)
    )


@users_router.post("/users/{user_id}/mfa/reset")
async def reset_mfa(user_id: uuid.UUID, actor: UserAdmin, session: SessionDep, kv: StoreDep) -> UserRead:
    """Remove an account's MFA enrolment (lost device)."""
    return _read(await service.reset_mfa(session=session, kv=kv, actor=actor, user_id=user_id))


@users_router.post("/users/{user_id}/unlock")
async def unlock_user(user_id: uuid.UUID, actor: UserAdmin, session: SessionDep, kv: StoreDep) -> UserRead:
    """Lift a login lockout of an account."""
    return _read(await service.unlock(session=session, kv=kv, actor=actor, user_id=user_id))


@users_router.get("/security-events")
async def security_events(
    actor: AuditReader,
    session: SessionDep,
    user_id: uuid.UUID | None = None,
    event: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SecurityEventRead]:
    """Recent security events (logins, lockouts, role changes...)."""
    rows = await service.list_events(session=session, actor=actor, user_id=user_id, event=event, limit=limit)
    return [SecurityEventRead.model_validate(r) for r in rows]
