"""Access and refresh tokens, their revocation state, and browser sessions (all in the kv store).

Refresh tokens are JWTs of ``typ`` "refresh" carrying a family id (``fam``). Each works once:
the first use marks its ``jti`` used (an atomic set-if-absent); presenting it again revokes the
whole family, which also invalidates the access tokens issued from it. All state has a TTL no
longer than the token it describes, and lives in Redis when configured (so it survives restarts).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from hims.core.kv import KeyValueStore
from hims.core.security import ALGORITHM, ISSUER, encode_access_token
from hims.settings import Settings

#: ``lim`` claim of the limited token given to an MFA-obliged user who has not enrolled yet (not
#: ``scope``, which carries SMART scopes for the FHIR API).
LIMIT_CLAIM = "lim"
MFA_ENROLMENT_SCOPE = "mfa_enrolment"


@dataclass(frozen=True)
class TokenPair:
    """What a successful login or refresh returns."""

    access_token: str
    refresh_token: str | None
    expires_in: int
    family: str


def _remaining(exp: Any) -> float:
    expires = exp if isinstance(exp, datetime) else datetime.fromtimestamp(float(exp), UTC)
    return max((expires - datetime.now(UTC)).total_seconds(), 1.0)


def encode_refresh_token(settings: Settings, *, user_id: uuid.UUID, family: str) -> str:
    """A signed refresh token (lifetime JWT_REFRESH_EXPIRES_IN)."""
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "sub": str(user_id),
        "typ": "refresh",
        "jti": uuid.uuid4().hex,
        "fam": family,
        "iat": now,
        "nbf": now - timedelta(seconds=5),
        "exp": now + settings.jwt_refresh_expires_in,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def issue_pair(
    settings: Settings, *, user_id: uuid.UUID, username: str, roles: list[str], family: str | None = None
) -> TokenPair:
    """A new access token and refresh token in ``family`` (a new family when None)."""
    family = family or uuid.uuid4().hex
    access = encode_access_token(
        settings, user_id=user_id, username=username, roles=roles, extra={"fam": family}
    )
    refresh = encode_refresh_token(settings, user_id=user_id, family=family)
    return TokenPair(access, refresh, int(settings.jwt_expires_in.total_seconds()), family)


def issue_enrolment_token(settings: Settings, *, user_id: uuid.UUID, username: str) -> TokenPair:
    """A limited access token that can only manage the caller's own MFA (no refresh token)."""
    family = uuid.uuid4().hex
    access = encode_access_token(
        settings,
        user_id=user_id,
        username=username,
        roles=[],
        extra={"fam": family, LIMIT_CLAIM: MFA_ENROLMENT_SCOPE},
    )
    return TokenPair(access, None, int(settings.jwt_expires_in.total_seconds()), family)


# ------------------------------------------------------------------ revocation state


async def revoke_access(kv: KeyValueStore, claims: dict[str, Any]) -> None:
    """Refuse this access token (by jti) until it expires anyway."""
    await kv.set(f"auth:revoked:jti:{claims['jti']}", "1", ttl=_remaining(claims["exp"]))


async def revoke_family(kv: KeyValueStore, settings: Settings, family: str) -> None:
    """Refuse every refresh and access token of ``family``."""
    ttl = settings.jwt_refresh_expires_in.total_seconds() + 60
    await kv.set(f"auth:revoked:fam:{family}", "1", ttl=ttl)


def revocation_keys(claims: dict[str, Any]) -> list[str]:
    """The kv keys whose presence means this access token is revoked (its jti, its family)."""
    keys = [f"auth:revoked:jti:{claims['jti']}"]
    if claims.get("fam"):
        keys.append(f"auth:revoked:fam:{claims['fam']}")
    return keys


async def is_revoked(kv: KeyValueStore, claims: dict[str, Any]) -> bool:
    """True when the token's jti or its family was revoked."""
    if await kv.get(f"auth:revoked:jti:{claims['jti']}") is not None:
        return True
    family = claims.get("fam")
    return family is not None and await kv.get(f"auth:revoked:fam:{family}") is not None


async def use_refresh_token(kv: KeyValueStore, claims: dict[str, Any]) -> bool:
    """Mark the refresh token used; False when it had been used before (reuse)."""
    return await kv.set(f"auth:used:rt:{claims['jti']}", "1", ttl=_remaining(claims["exp"]), only_new=True)


# ------------------------------------------------------------------ browser sessions


@dataclass(frozen=True)
class BrowserSession:
    """A cookie session: the user it belongs to and its CSRF token."""

    user_id: uuid.UUID
    csrf_token: str


def _session_key(session_id: str) -> str:
    # Only a hash of the cookie value is stored, so a dump of Redis yields no usable cookie.
    return "auth:session:" + hashlib.sha256(session_id.encode()).hexdigest()


async def create_session(kv: KeyValueStore, settings: Settings, *, user_id: uuid.UUID) -> tuple[str, str]:
    """Store a new session; returns (opaque cookie value, CSRF token)."""
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    value = json.dumps({"user_id": str(user_id), "csrf": csrf})
    await kv.set(_session_key(session_id), value, ttl=settings.session_ttl.total_seconds())
    return session_id, csrf


async def read_session(kv: KeyValueStore, session_id: str) -> BrowserSession | None:
    """The session behind a cookie value, or None."""
    raw = await kv.get(_session_key(session_id))
    if raw is None:
        return None
    data = json.loads(raw)
    return BrowserSession(uuid.UUID(data["user_id"]), str(data["csrf"]))


async def delete_session(kv: KeyValueStore, session_id: str) -> None:
    """End a browser session."""
    await kv.delete(_session_key(session_id))
