from __future__ import annotations

from datetime import timedelta

import pytest

from hims.settings import load_settings


def test_identity_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFA_REQUIRED_ROLES", "admin, operator,physician")
    monkeypatch.setenv("LOGIN_MAX_FAILURES", "5")
    monkeypatch.setenv("LOGIN_LOCKOUT_SECONDS", "600")
    monkeypatch.setenv("PASSWORD_RESET_TTL", "15m")
    settings = load_settings()
    assert settings.mfa_required_roles == ["admin", "operator", "physician"]
    assert settings.login_max_failures == 5
    assert settings.login_lockout_seconds == 600
    assert settings.password_reset_ttl == timedelta(minutes=15)


def test_defaults_follow_the_guide() -> None:
    settings = load_settings()
    assert (settings.login_max_failures, settings.login_lockout_seconds) == (3, 3600)
    assert settings.password_reset_ttl == timedelta(minutes=30)
    assert settings.mfa_required_roles == ["admin", "operator"]
