"""TOTP (RFC 6238) secrets, provisioning URIs, QR codes and recovery codes."""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets

import pyotp
import segno

ISSUER_NAME = "AROCORD-HIMS"
RECOVERY_CODE_COUNT = 10


def new_secret() -> str:
    """A random base32 TOTP seed (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str) -> str:
    """The ``otpauth://`` URI authenticator apps import."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER_NAME)


def qr_svg(uri: str) -> str:
    """The URI as an SVG QR code (for the enrolment screen)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return buffer.getvalue().decode("utf-8")


def verify_code(secret: str, code: str) -> bool:
    """True for the current code or its neighbours (±30 s clock skew)."""
    code = code.strip().replace(" ", "")
    return code.isdigit() and len(code) == 6 and pyotp.TOTP(secret).verify(code, valid_window=1)


def new_recovery_codes() -> list[str]:
    """Ten one-time recovery codes like ``k3j9d-x2m4q`` (50 bits each)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(alphabet) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def hash_recovery_code(code: str) -> str:
    """SHA-256 of the normalised code (stored instead of the code)."""
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode()).hexdigest()


def match_recovery_code(hashes: list[str], code: str) -> str | None:
    """The stored hash matching ``code``, or None."""
    candidate = hash_recovery_code(code)
    for stored in hashes:
        if hmac.compare_digest(stored, candidate):
            return stored
    return None
