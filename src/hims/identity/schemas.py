"""Pydantic bodies in and out of the identity API (the MFA secret and hashes are never in one)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, StringConstraints

from hims.core.permissions import Role

Username = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=2, max_length=150, pattern=r"^[A-Za-z0-9._@-]+$")
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
TotpCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=16)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_In):
    """Username and password, plus a TOTP or recovery code once MFA is enrolled."""

    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=150)]
    password: Password
    totp: TotpCode | None = None


class TokenResponse(BaseModel):
    """Tokens after login or refresh."""

    access_token: str
    refresh_token: str | None
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    mfa_enrolment_required: bool = False


class RefreshRequest(_In):
    """A refresh token to rotate."""

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class LogoutRequest(_In):
    """Optionally the refresh token, whose family is revoked too."""

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


class PasswordChange(_In):
    """The current password and the new one."""

    current_password: Password
    new_password: Password


class PasswordResetRequest(_In):
    """Who forgot their password (username or e-mail address)."""

    login: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=254)]


class PasswordResetConfirm(_In):
    """The token from the e-mail and the new password."""

    token: Annotated[str, StringConstraints(min_length=10, max_length=200)]
    new_password: Password


class MfaEnrolment(BaseModel):
    """Shown once at enrolment: scan the QR code (or the URI) and keep the recovery codes."""

    otpauth_uri: str
    qr_svg: str
    recovery_codes: list[str]


class MfaConfirm(_In):
    """A code from the authenticator app, to finish enrolment."""

    code: TotpCode


class UserCreate(_In):
    """A new staff account."""

    username: Username
    password: Password
    roles: list[Role] = Field(min_length=1, max_length=7)
    email: Email | None = None
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    practitioner_id: uuid.UUID | None = None


class RolesUpdate(_In):
    """The complete new set of roles."""

    roles: list[Role] = Field(min_length=1, max_length=7)


class UserSummary(BaseModel):
    """A staff account in lists."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    display_name: str
    roles: list[str]
    active: bool


class UserRead(UserSummary):
    """A staff account in detail (never the password hash, MFA secret or recovery codes)."""

    email: str | None
    practitioner_id: uuid.UUID | None
    mfa_enabled: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Me(UserRead):
    """The caller's own account and what it may do."""

    permissions: list[str]
    mfa_required: bool


class SessionCreated(BaseModel):
    """After a cookie login: the CSRF token to send back on unsafe requests."""

    csrf_token: str
    user: UserSummary


class SecurityEventRead(BaseModel):
    """One row of the security event log."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    event: str
    outcome: str
    user_id: uuid.UUID | None
    username: str | None
    actor_username: str | None
    ip_address: IPvAnyAddress | None
    detail: dict[str, object]
