"""Password hashing (argon2id) and the password policy.

Hashing runs in a worker thread so a login never blocks the event loop. The cost is set by
``PASSWORD_HASH_*`` (default: OWASP's argon2id minimum, m=19 MiB, t=2, p=1); hashes made with
older parameters are upgraded on the next successful login.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hims.core.errors import field_error
from hims.settings import Settings

MIN_LENGTH = 12
MAX_LENGTH = 256


@cache
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)


def hasher(settings: Settings) -> PasswordHasher:
    """The argon2id hasher for the configured cost."""
    return _hasher(
        settings.password_hash_time_cost,
        settings.password_hash_memory_kib,
        settings.password_hash_parallelism,
    )


async def hash_password(settings: Settings, password: str) -> str:
    """An argon2id hash of ``password`` (computed off the event loop)."""
    return await asyncio.to_thread(hasher(settings).hash, password)


def _verify(ph: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return ph.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(settings: Settings, stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; with no stored hash, burn the same time and fail."""
    ph = hasher(settings)
    if stored is None:
        await asyncio.to_thread(_verify, ph, _dummy_hash(ph), password)
        return False
    return await asyncio.to_thread(_verify, ph, stored, password)


def needs_rehash(settings: Settings, stored: str) -> bool:
    """True when ``stored`` was made with other parameters than the configured ones."""
    try:
        return hasher(settings).check_needs_rehash(stored)
    except InvalidHashError:
        return True


@cache
def _dummy_hash(ph: PasswordHasher) -> str:
    # Verified for unknown users so they take as long as a wrong password for a real one.
    return ph.hash("not-a-real-password-just-for-timing")


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (lower-case)."""
    text = resources.files("hims.identity").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def policy_errors(password: str, *, username: str | None, field: str = "password") -> list[dict[str, Any]]:
    """Why ``password`` is not acceptable (empty list when it is)."""
    errors = []
    if len(password) < MIN_LENGTH:
        errors.append(field_error(field, f"Use at least {MIN_LENGTH} characters.", "password_too_short"))
    if len(password) > MAX_LENGTH:
        errors.append(field_error(field, f"Use at most {MAX_LENGTH} characters.", "password_too_long"))
    if password.lower() in common_passwords():
        errors.append(field_error(field, "This password is too common.", "password_too_common"))
    if username and password.strip().lower() == username.strip().lower():
        errors.append(field_error(field, "The password may not be the username.", "password_is_username"))
    return errors
