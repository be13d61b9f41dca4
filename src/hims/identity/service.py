"""The identity rules: login, token rotation, lockout, passwords, MFA and account administration.

Every function takes keyword-only arguments, writes its security event in the caller's session
(same transaction as the change) and never commits. Login-type functions return a result with
an ``error`` instead of raising, so the boundary can commit the failure's security event and then
raise the error.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.errors import (
    Conflict,
    HimsError,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
    field_error,
)
from hims.core.kv import KeyValueStore
from hims.core.permissions import Role, permissions_for
from hims.core.security import Actor, decode_token
from hims.identity import mfa, passwords, repository, tokens
from hims.identity.models import SecurityEvent, User
from hims.identity.schemas import UserCreate
from hims.settings import Settings

INVALID_CREDENTIALS = "Invalid username or password."
RESET_REQUESTS_PER_HOUR = 5
#: How long the authenticator may trust a cached user status (invalidated on every change).
USER_STATUS_TTL = 30.0


@dataclass(frozen=True)
class Client:
    """Where an unauthenticated call comes from (for lockout and security events)."""

    ip: str | None = None
    request_id: str | None = None


@dataclass
class LoginResult:
    """The outcome of a login or refresh: tokens, or the error to raise after commit."""

    user: User | None = None
    pair: tokens.TokenPair | None = None
    error: HimsError | None = None
    mfa_enrolment_required: bool = False


async def _save(session: AsyncSession, user: User) -> None:
    """Flush a changed user and reload server-set columns (updated_at) for the response."""
    await session.flush()
    await session.refresh(user)


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and compared lower-case."""
    return username.strip().lower()


def mfa_required(settings: Settings, roles: Sequence[str]) -> bool:
    """True when one of ``roles`` must use MFA in this environment (production and staging)."""
    return settings.is_production and any(r in settings.mfa_required_roles for r in roles)


# ------------------------------------------------------------------ security events


async def record_event(
    *,
    session: AsyncSession,
    event: str,
    outcome: str = "success",
    user_id: uuid.UUID | None = None,
    username: str | None = None,
    actor: Actor | None = None,
    client: Client | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append a security event in the caller's transaction."""
    await repository.insert_event(
        session,
        event=event,
        outcome=outcome,
        user_id=user_id,
        username=username,
        actor_id=actor.user_id if actor else None,
        actor_username=actor.username if actor else None,
        ip_address=(client.ip if client else None) or (actor.client_ip if actor else None),
        request_id=(client.request_id if client else None) or (actor.request_id if actor else None),
        detail=detail or {},
    )


async def list_events(
    *, session: AsyncSession, actor: Actor, user_id: uuid.UUID | None, event: str | None, limit: int
) -> Sequence[SecurityEvent]:
    """Recent security events (compliance and admins)."""
    return await repository.list_events(session, user_id=user_id, event=event, limit=limit)


# ------------------------------------------------------------------ user status cache


@dataclass(frozen=True)
class UserStatus:
    """What the authenticator needs to know about a user on every request."""

    user_id: uuid.UUID
    username: str
    active: bool
    roles: tuple[str, ...]
    practitioner_id: uuid.UUID | None
    tokens_valid_after: int  # epoch seconds: tokens issued earlier are refused


def status_key(user_id: uuid.UUID) -> str:
    """The kv key caching ``user_id``'s status."""
    return f"auth:user:{user_id}"


def status_of(user: User) -> UserStatus:
    """The cacheable status of ``user``."""
    changed = user.password_changed_at
    return UserStatus(
        user_id=user.id,
        username=user.username,
        active=user.active,
        roles=tuple(user.roles),
        practitioner_id=user.practitioner_id,
        tokens_valid_after=int(changed.timestamp()) if changed else 0,
    )


def parse_status(user_id: uuid.UUID, raw: str) -> UserStatus | None:
    """A cached status value back into a UserStatus (None: cached 'no such user')."""
    data = json.loads(raw)
    if not data:
        return None
    return UserStatus(
        user_id=user_id,
        username=data["username"],
        active=data["active"],
        roles=tuple(data["roles"]),
        practitioner_id=uuid.UUID(data["practitioner_id"]) if data["practitioner_id"] else None,
        tokens_valid_after=int(data["tva"]),
    )


async def load_status(*, session_factory: Any, kv: KeyValueStore, user_id: uuid.UUID) -> UserStatus | None:
    """The user's status from the database, then cached for USER_STATUS_TTL seconds."""
    async with session_factory() as session:
        user = await repository.get_user(session, user_id)
    status = status_of(user) if user else None
    payload = (
        {
            "username": status.username,
            "active": status.active,
            "roles": list(status.roles),
            "practitioner_id": str(status.practitioner_id) if status.practitioner_id else None,
            "tva": status.tokens_valid_after,
        }
        if status
        else {}
    )
    await kv.set(status_key(user_id), json.dumps(payload), ttl=USER_STATUS_TTL)
    return status


async def cached_status(*, session_factory: Any, kv: KeyValueStore, user_id: uuid.UUID) -> UserStatus | None:
    """The user's status from the kv store, or from the database (then cached briefly)."""
    raw = await kv.get(status_key(user_id))
    if raw is not None:
        return parse_status(user_id, raw)
    return await load_status(session_factory=session_factory, kv=kv, user_id=user_id)


async def invalidate_status(kv: KeyValueStore, user_id: uuid.UUID) -> None:
    """Forget the cached status so the next request sees the change."""
    await kv.delete(status_key(user_id))


# ------------------------------------------------------------------ lockout


def _fail_keys(username: str, ip: str | None) -> list[tuple[str, str, str]]:
    keys = [("account", f"auth:fail:user:{username}", f"auth:lock:user:{username}")]
    if ip:
        keys.append(("ip", f"auth:fail:ip:{ip}", f"auth:lock:ip:{ip}"))
    return keys


async def lockout_remaining(kv: KeyValueStore, *, username: str, ip: str | None) -> tuple[str, int] | None:
    """(scope, seconds left) when the account or the IP is locked out, else None."""
    for scope, _fail, lock in _fail_keys(username, ip):
        if await kv.get(lock) is not None:
            left = await kv.ttl(lock)
            return scope, max(int(left or 1), 1)
    return None


async def _count_failure(
    *,
    session: AsyncSession,
    kv: KeyValueStore,
    settings: Settings,
    username: str,
    user: User | None,
    client: Client,
) -> None:
    window = float(settings.login_lockout_seconds)
    for scope, fail, lock in _fail_keys(username, client.ip):
        count = await kv.incr(fail, ttl=window)
        if count >= settings.login_max_failures and await kv.set(lock, "1", ttl=window, only_new=True):
            await kv.delete(fail)
            await record_event(
                session=session,
                event="locked",
                outcome="denied",
                user_id=user.id if user else None,
                username=username,
                client=client,
                detail={"scope": scope, "failures": count, "seconds": settings.login_lockout_seconds},
            )


async def unlock(*, session: AsyncSession, kv: KeyValueStore, actor: Actor, user_id: uuid.UUID) -> User:
    """Lift an account lockout and reset its failure counter."""
    user = await get_user(session=session, actor=actor, user_id=user_id)
    removed = await kv.delete(f"auth:fail:user:{user.username}", f"auth:lock:user:{user.username}")
    await record_event(
        session=session,
        event="unlocked",
        user_id=user.id,
        username=user.username,
        actor=actor,
        detail={"scope": "account", "keys_removed": removed},
    )
    return user


async def unlock_ip(*, session: AsyncSession, kv: KeyValueStore, actor: Actor, ip: str) -> None:
    """Lift the lockout of a client address."""
    removed = await kv.delete(f"auth:fail:ip:{ip}", f"auth:lock:ip:{ip}")
    await record_event(
        session=session,
        event="unlocked",
        actor=actor,
        detail={"scope": "ip", "ip": ip, "keys_removed": removed},
    )


# ------------------------------------------------------------------ login, refresh, logout


async def _check_second_factor(*, kv: KeyValueStore, user: User, code: str) -> bool:
    assert user.mfa_secret is not None
    normalised = code.strip().replace(" ", "")
    if normalised.isdigit():
        if not mfa.verify_code(user.mfa_secret, normalised):
            return False
        # A code works once (RFC 6238 §5.2): remember it for its validity window.
        return await kv.set(f"auth:totp:{user.id}:{normalised}", "1", ttl=120, only_new=True)
    stored = mfa.match_recovery_code(list(user.recovery_code_hashes), code)
    if stored is None:
        return False
    user.recovery_code_hashes = [h for h in user.recovery_code_hashes if h != stored]
    return True


async def login(
    *,
    session: AsyncSession,
    kv: KeyValueStore,
    settings: Settings,
    username: str,
    password: str,
    totp: str | None,
    client: Client,
) -> LoginResult:
    """Check credentials (and the second factor) under the lockout rules; issue tokens."""
    name = normalise_username(username)
    locked = await lockout_remaining(kv, username=name, ip=client.ip)
    if locked is not None:
        scope, seconds = locked
        await record_event(
            session=session,
            event="login_refused_locked",
            outcome="denied",
            username=name,
            client=client,
            detail={"scope": scope, "retry_after": seconds},
        )
        return LoginResult(
            error=TooManyRequests(
                "Too many failed logins; try again later or ask an administrator to unlock the account.",
                code="login_locked",
                headers={"Retry-After": str(seconds)},
                extra={"retry_after": seconds},
            )
        )
    user = await repository.get_user_by_username(session, name, for_update=True)
    ok = await passwords.verify_password(settings, user.password_hash if user else None, password)
    reason = "unknown_user" if user is None else ("bad_password" if not ok else None)
    if user is not None and ok and not user.active:
        ok, reason = False, "disabled"
    if not ok:
        await record_event(
            session=session,
            event="login_failed",
            outcome="failure",
            user_id=user.id if user else None,
            username=name,
            client=client,
            detail={"reason": reason},
        )
        await _count_failure(
            session=session, kv=kv, settings=settings, username=name, user=user, client=client
        )
        return LoginResult(error=Unauthorized(INVALID_CREDENTIALS, code="invalid_credentials"))
    assert user is not None
    if user.mfa_enabled:
        if not totp:
            return LoginResult(
                error=Unauthorized("Enter the code from your authenticator app.", code="mfa_code_required")
            )
        if not await _check_second_factor(kv=kv, user=user, code=totp):
            await record_event(
                session=session,
                event="login_failed",
                outcome="failure",
                user_id=user.id,
                username=name,
                client=client,
                detail={"reason": "bad_mfa_code"},
            )
            await _count_failure(
                session=session, kv=kv, settings=settings, username=name, user=user, client=client
            )
            return LoginResult(error=Unauthorized("The code is not valid.", code="invalid_mfa_code"))
    await kv.delete(f"auth:fail:user:{name}")
    if user.password_hash and passwords.needs_rehash(settings, user.password_hash):
        user.password_hash = await passwords.hash_password(settings, password)
    user.last_login_at = datetime.now(UTC)
    enrolment = mfa_required(settings, user.roles) and not user.mfa_enabled
    await record_event(
        session=session,
        event="login_succeeded",
        user_id=user.id,
        username=name,
        client=client,
        detail={"mfa": user.mfa_enabled, "limited_to_mfa_enrolment": enrolment},
    )
    if enrolment:
        pair = tokens.issue_enrolment_token(settings, user_id=user.id, username=user.username)
    else:
        pair = tokens.issue_pair(settings, user_id=user.id, username=user.username, roles=list(user.roles))
    return LoginResult(user=user, pair=pair, mfa_enrolment_required=enrolment)


async def refresh(
    *, session: AsyncSession, kv: KeyValueStore, settings: Settings, refresh_token: str, client: Client
) -> LoginResult:
    """Rotate a refresh token; a second use of one revokes its whole family (theft detection)."""
    claims = decode_token(settings, refresh_token, expected_type="refresh")
    family = str(claims.get("fam", ""))
    if not family:
        raise Unauthorized("The token is invalid.", code="invalid_token")
    user_id = uuid.UUID(claims["sub"])
    if await kv.get(f"auth:revoked:fam:{family}") is not None:
        return LoginResult(error=Unauthorized("The session has ended; log in again.", code="token_revoked"))
    if not await tokens.use_refresh_token(kv, claims):
        await tokens.revoke_family(kv, settings, family)
        await record_event(
            session=session,
            event="token_reuse_detected",
            outcome="denied",
            user_id=user_id,
            client=client,
            detail={"family": family, "jti": claims["jti"]},
        )
        return LoginResult(
            error=Unauthorized(
                "This refresh token was already used; every session of its family is now revoked.",
                code="token_reused",
            )
        )
    user = await repository.get_user(session, user_id)
    issued = int(claims["iat"])
    if user is None or not user.active:
        return LoginResult(error=Unauthorized("The account is not active.", code="invalid_token"))
    if user.password_changed_at and issued < int(user.password_changed_at.timestamp()):
        return LoginResult(error=Unauthorized("The session has ended; log in again.", code="token_revoked"))
    pair = tokens.issue_pair(
        settings, user_id=user.id, username=user.username, roles=list(user.roles), family=family
    )
    return LoginResult(user=user, pair=pair)


async def logout(
    *,
    session: AsyncSession,
    kv: KeyValueStore,
    settings: Settings,
    actor: Actor,
    refresh_token: str | None,
) -> None:
    """Revoke the caller's access token, its refresh family and (if given) another refresh token."""
    exp = actor.extra.get("exp")
    if actor.token_id and exp is not None:
        await tokens.revoke_access(kv, {"jti": actor.token_id, "exp": exp})
    families = {actor.extra["fam"]} if actor.extra.get("fam") else set()
    if refresh_token:
        try:
            claims = decode_token(settings, refresh_token, expected_type="refresh")
        except Unauthorized:
            claims = None
        if claims and claims["sub"] == str(actor.user_id) and claims.get("fam"):
            families.add(str(claims["fam"]))
    for family in families:
        await tokens.revoke_family(kv, settings, family)
    if actor.extra.get("session_id"):
        await tokens.delete_session(kv, str(actor.extra["session_id"]))
    await record_event(
        session=session,
        event="logout",
        user_id=actor.user_id,
        username=actor.username,
        actor=actor,
        detail={"families": len(families), "browser_session": bool(actor.extra.get("session_id"))},
    )


# ------------------------------------------------------------------ own account


async def me(*, session: AsyncSession, actor: Actor) -> User:
    """The caller's account."""
    if actor.user_id is None:
        raise NotFound("This caller has no account.", code="user_not_found")
    user = await repository.get_user(session, actor.user_id)
    if user is None:
        raise NotFound("This caller has no account.", code="user_not_found")
    return user


async def _set_password(
    *, session: AsyncSession, kv: KeyValueStore, settings: Settings, user: User, password: str, field: str
) -> None:
    errors = passwords.policy_errors(password, username=user.username, field=field)
    if errors:
        raise ValidationFailed("The new password does not meet the policy.", errors=errors)
    user.password_hash = await passwords.hash_password(settings, password)
    # Whole seconds, because token `iat` is whole seconds: tokens from before this second stop working.
    user.password_changed_at = datetime.now(UTC).replace(microsecond=0)
    await _save(session, user)
    await invalidate_status(kv, user.id)


async def change_password(
    *,
    session: AsyncSession,
    kv: KeyValueStore,
    settings: Settings,
    actor: Actor,
    current_password: str,
    new_password: str,
) -> tokens.TokenPair:
    """Change one's own password; every earlier token is invalidated and a new pair returned."""
    user = await me(session=session, actor=actor)
    if not await passwords.verify_password(settings, user.password_hash, current_password):
        await record_event(
            session=session,
            event="password_change_failed",
            outcome="failure",
            user_id=user.id,
            username=user.username,
            actor=actor,
        )
        raise ValidationFailed(
            "The current password is wrong.",
            errors=[field_error("current_password", "The current password is wrong.", "wrong_password")],
        )
    await _set_password(
        session=session, kv=kv, settings=settings, user=user, password=new_password, field="new_password"
    )
    await record_event(
        session=session, event="password_changed", user_id=user.id, username=user.username, actor=actor
    )
    return tokens.issue_pair(settings, user_id=user.id, username=user.username, roles=list(user.roles))


@dataclass(frozen=True)
class ResetMail:
    """A password-reset message to send after commit."""

    to: str
    subject: str
    body: str


def _reset_key(token: str) -> str:
    return "auth:reset:" + hashlib.sha256(token.encode()).hexdigest()


async def request_password_reset(
    *, session: AsyncSession, kv: KeyValueStore, settings: Settings, login: str, client: Client
) -> ResetMail | None:
    """A single-use reset link for an active user with an e-mail address (None otherwise).

    The caller answers the same way either way so the endpoint does not reveal who exists.
    At most RESET_REQUESTS_PER_HOUR per client address and per login, so nobody can flood a
    mailbox or the mail server.
    """
    for key in (f"auth:reset-req:ip:{client.ip}", f"auth:reset-req:login:{login.lower()}"):
        if await kv.incr(key, ttl=3600) > RESET_REQUESTS_PER_HOUR:
            seconds = max(int(await kv.ttl(key) or 1), 1)
            raise TooManyRequests(
                "Too many password-reset requests; try again later.",
                code="reset_rate_limited",
                headers={"Retry-After": str(seconds)},
            )
    user = await repository.get_user_by_login(session, login)
    if user is None or not user.active or not user.email:
        await record_event(
            session=session,
            event="password_reset_requested",
            outcome="failure",
            username=login[:150],
            client=client,
            detail={"reason": "no_such_active_user_with_email"},
        )
        return None
    token = secrets.token_urlsafe(32)
    minutes = int(settings.password_reset_ttl.total_seconds() // 60)
    await kv.set(_reset_key(token), str(user.id), ttl=settings.password_reset_ttl.total_seconds())
    await record_event(
        session=session,
        event="password_reset_requested",
        user_id=user.id,
        username=user.username,
        client=client,
    )
    link = f"{settings.public_url.rstrip('/')}/reset-password?token={token}"
    body = (
        f"Hello {user.display_name or user.username},\n\n"
        f"Someone asked to reset the password of the AROCORD-HIMS account '{user.username}'.\n"
        f"Open this link within {minutes} minutes to choose a new password (it works once):\n\n"
        f"{link}\n\n"
        "If this was not you, ignore this message; your password stays as it is.\n"
    )
    return ResetMail(to=user.email, subject="AROCORD-HIMS password reset", body=body)


async def confirm_password_reset(
    *,
    session: AsyncSession,
    kv: KeyValueStore,
    settings: Settings,
    token: str,
    new_password: str,
    client: Client,
) -> None:
    """Set a new password with a reset token (single use); ends every session of the user."""
    key = _reset_key(token)
    raw = await kv.get(key)
    invalid = ValidationFailed(
        "The reset link is invalid, used or expired; ask for a new one.",
        code="reset_token_invalid",
        errors=[field_error("token", "invalid, used or expired", "reset_token_invalid")],
    )
    if raw is None:
        raise invalid
    user = await repository.get_user(session, uuid.UUID(raw), for_update=True)
    if user is None or not user.active:
        raise invalid
    # Validate before consuming so a weak password does not burn the link.
    errors = passwords.policy_errors(new_password, username=user.username, field="new_password")
    if errors:
        raise ValidationFailed("The new password does not meet the policy.", errors=errors)
    if await kv.delete(key) == 0:
        raise invalid
    await _set_password(
        session=session, kv=kv, settings=settings, user=user, password=new_password, field="new_password"
    )
    await kv.delete(f"auth:fail:user:{user.username}", f"auth:lock:user:{user.username}")
    await record_event(
        session=session, event="password_reset", user_id=user.id, username=user.username, client=client
    )


async def start_mfa_enrolment(
    *, session: AsyncSession, kv: KeyValueStore, actor: Actor
) -> tuple[str, list[str]]:
    """A new TOTP secret and recovery codes for the caller; returns (otpauth URI, codes)."""
    user = await me(session=session, actor=actor)
    if user.mfa_enabled:
        raise Conflict("MFA is already enrolled; an administrator can reset it.", code="mfa_already_enrolled")
    user.mfa_secret = mfa.new_secret()
    codes = mfa.new_recovery_codes()
    user.recovery_code_hashes = [mfa.hash_recovery_code(c) for c in codes]
    await record_event(
        session=session, event="mfa_enrolment_started", user_id=user.id, username=user.username, actor=actor
    )
    return mfa.provisioning_uri(user.mfa_secret, user.username), codes


async def confirm_mfa_enrolment(*, session: AsyncSession, kv: KeyValueStore, actor: Actor, code: str) -> User:
    """Turn MFA on once the caller proves their app produces valid codes."""
    user = await me(session=session, actor=actor)
    if user.mfa_enabled:
        raise Conflict("MFA is already enrolled.", code="mfa_already_enrolled")
    if user.mfa_secret is None:
        raise PreconditionFailed("Start the enrolment first.", code="mfa_enrolment_not_started")
    if not mfa.verify_code(user.mfa_secret, code):
        raise ValidationFailed(
            "The code is not valid.",
            errors=[field_error("code", "The code is not valid.", "invalid_mfa_code")],
        )
    user.mfa_enabled = True
    # The confirming code is spent: it cannot be replayed for a login.
    await kv.set(f"auth:totp:{user.id}:{code.strip().replace(' ', '')}", "1", ttl=120, only_new=True)
    await record_event(
        session=session, event="mfa_enrolled", user_id=user.id, username=user.username, actor=actor
    )
    await _save(session, user)
    await invalidate_status(kv, user.id)
    return user


# ------------------------------------------------------------------ administration


async def create_user(*, session: AsyncSession, settings: Settings, actor: Actor, data: UserCreate) -> User:
    """Create a staff account (the CLI bootstraps the first admin through this same function)."""
    username = normalise_username(data.username)
    errors = passwords.policy_errors(data.password, username=username)
    if errors:
        raise ValidationFailed("The password does not meet the policy.", errors=errors)
    if await repository.get_user_by_username(session, username) is not None:
        raise Conflict(f"The username {username!r} is taken.", code="username_taken")
    roles = sorted({Role(r).value for r in data.roles})
    user = User(
        username=username,
        email=data.email,
        display_name=data.display_name or username,
        active=True,
        roles=roles,
        practitioner_id=data.practitioner_id,
        password_hash=await passwords.hash_password(settings, data.password),
        password_changed_at=datetime.now(UTC).replace(microsecond=0),
        mfa_enabled=False,
        recovery_code_hashes=[],
    )
    try:
        async with session.begin_nested():
            await repository.add_user(session, user)
    except IntegrityError as exc:
        text = str(exc.orig)
        if "practitioner" in text:
            raise ValidationFailed(
                "No such practitioner.",
                errors=[field_error("practitioner_id", "No practitioner with this id.", "not_found")],
            ) from None
        raise Conflict(f"The username {username!r} is taken.", code="username_taken") from None
    await record_event(
        session=session,
        event="user_created",
        user_id=user.id,
        username=user.username,
        actor=actor,
        detail={"roles": roles},
    )
    return user


async def list_users(
    *, session: AsyncSession, actor: Actor, limit: int = 100, offset: int = 0, active: bool | None = None
) -> Sequence[User]:
    """Staff accounts, ordered by username."""
    return await repository.list_users(session, limit=limit, offset=offset, active=active)


async def get_user(*, session: AsyncSession, actor: Actor, user_id: uuid.UUID) -> User:
    """One staff account or NotFound."""
    user = await repository.get_user(session, user_id, for_update=False)
    if user is None:
        raise NotFound("No user with this id.", code="user_not_found")
    return user


async def find_user(*, session: AsyncSession, actor: Actor, username: str) -> User:
    """A staff account by username or NotFound (CLI)."""
    user = await repository.get_user_by_username(session, normalise_username(username))
    if user is None:
        raise NotFound(f"No user named {username!r}.", code="user_not_found")
    return user


async def set_active(
    *, session: AsyncSession, kv: KeyValueStore, actor: Actor, user_id: uuid.UUID, active: bool
) -> User:
    """Disable (every token and session stops working at once) or re-enable an account."""
    user = await get_user(session=session, actor=actor, user_id=user_id)
    if not active and user.id == actor.user_id:
        raise Conflict("You cannot disable your own account.", code="cannot_disable_self")
    if user.active != active:
        user.active = active
        await record_event(
            session=session,
            event="user_enabled" if active else "user_disabled",
            user_id=user.id,
            username=user.username,
            actor=actor,
        )
        await _save(session, user)
    await invalidate_status(kv, user.id)
    return user


async def set_roles(
    *, session: AsyncSession, kv: KeyValueStore, actor: Actor, user_id: uuid.UUID, roles: Sequence[str]
) -> User:
    """Replace an account's roles (takes effect on the next request)."""
    user = await get_user(session=session, actor=actor, user_id=user_id)
    new = sorted({Role(r).value for r in roles})
    if user.id == actor.user_id and Role.ADMIN.value in user.roles and Role.ADMIN.value not in new:
        raise Conflict("You cannot remove your own admin role.", code="cannot_demote_self")
    before = list(user.roles)
    if before != new:
        user.roles = new
        await record_event(
            session=session,
            event="role_changed",
            user_id=user.id,
            username=user.username,
            actor=actor,
            detail={"before": before, "after": new},
        )
        await _save(session, user)
    await invalidate_status(kv, user.id)
    return user


async def reset_mfa(*, session: AsyncSession, kv: KeyValueStore, actor: Actor, user_id: uuid.UUID) -> User:
    """Remove an account's MFA enrolment (lost phone); the user enrols again at next login."""
    user = await get_user(session=session, actor=actor, user_id=user_id)
    user.mfa_secret = None
    user.mfa_enabled = False
    user.recovery_code_hashes = []
    await record_event(
        session=session, event="mfa_reset", user_id=user.id, username=user.username, actor=actor
    )
    await _save(session, user)
    await invalidate_status(kv, user.id)
    return user


@dataclass
class MeView:
    """The caller's account with permissions (for GET /auth/me)."""

    user: User
    permissions: list[str] = field(default_factory=list)
    mfa_required: bool = False


async def describe_me(*, session: AsyncSession, settings: Settings, actor: Actor) -> MeView:
    """The caller's account, effective permissions and whether MFA is required for them."""
    user = await me(session=session, actor=actor)
    return MeView(
        user=user,
        permissions=sorted(actor.permissions),
        mfa_required=mfa_required(settings, user.roles),
    )


def role_permissions(roles: Sequence[str]) -> frozenset[str]:
    """Permissions granted by ``roles``."""
    return permissions_for(list(roles))
