from __future__ import annotations

from datetime import timedelta

import pytest

from hims.settings import (
    KNOWN_DEFAULT_SECRETS,
    SECRET_FIELDS,
    Settings,
    SettingsError,
    load_settings,
    mask_url,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the process environment: start every test from none of our variables."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(f"{name.upper()}_FILE", raising=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("250ms", timedelta(milliseconds=250)),
        ("90", timedelta(seconds=90)),
    ],
)
def test_durations_accept_the_guides_forms(monkeypatch: pytest.MonkeyPatch, text: str, expected: timedelta):
    monkeypatch.setenv("JWT_EXPIRES_IN", text)
    assert load_settings().jwt_expires_in == expected


@pytest.mark.parametrize("text", ["1x", "h", "-1h", "0s", "one hour"])
def test_bad_durations_name_the_variable(monkeypatch: pytest.MonkeyPatch, text: str):
    monkeypatch.setenv("JWT_REFRESH_EXPIRES_IN", text)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert len(caught.value.lines) == 1
    assert caught.value.lines[0].startswith("JWT_REFRESH_EXPIRES_IN: ")


def test_defaults_follow_the_guide():
    settings = load_settings()
    assert settings.port == 3000
    assert settings.api_prefix == "/api/v1"
    assert settings.database_max_connections == 20
    assert settings.database_idle_timeout == 30000
    assert settings.jwt_expires_in == timedelta(hours=1)
    assert settings.jwt_refresh_expires_in == timedelta(days=7)
    assert settings.embedded_database
    assert settings.hims_env == "development"


@pytest.mark.parametrize("name", SECRET_FIELDS)
def test_every_secret_reads_from_name_file(monkeypatch: pytest.MonkeyPatch, tmp_path, name: str):
    urls = {"database_url": "postgresql://u:from-file@db/x", "redis_url": "redis://:from-file@cache:6379/0"}
    value = urls.get(name, "value-from-a-secret-file")
    path = tmp_path / "secret"
    path.write_text(value + "\n", encoding="utf-8")
    monkeypatch.setenv(f"{name.upper()}_FILE", str(path))
    loaded = getattr(load_settings(), name)
    assert (loaded if isinstance(loaded, str) else loaded.get_secret_value()) == value


def test_variable_wins_over_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path):
    path = tmp_path / "secret"
    path.write_text("from-file", encoding="utf-8")
    monkeypatch.setenv("JWT_SECRET_FILE", str(path))
    monkeypatch.setenv("JWT_SECRET", "from-variable")
    assert load_settings().jwt_secret.get_secret_value() == "from-variable"


def test_unreadable_secret_file_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("SMTP_PASS_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines[0].startswith("SMTP_PASS_FILE: cannot read")


def test_every_invalid_variable_is_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PORT", "http")
    monkeypatch.setenv("HIMS_ENV", "prod")
    monkeypatch.setenv("DATABASE_MAX_CONNECTIONS", "0")
    monkeypatch.setenv("METRICS_ALLOW_NETWORKS", "10.0.0.0/8,not-a-network")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    named = sorted(line.split(":")[0] for line in caught.value.lines)
    assert named == ["DATABASE_MAX_CONNECTIONS", "HIMS_ENV", "METRICS_ALLOW_NETWORKS", "PORT"]


@pytest.mark.parametrize("secret", ["your-secret-key", "password", "secret", None])
def test_production_refuses_missing_or_default_jwt_secret(monkeypatch: pytest.MonkeyPatch, secret):
    monkeypatch.setenv("HIMS_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://hims:a-long-random-password@db/hims")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379")
    if secret is not None:
        monkeypatch.setenv("JWT_SECRET", secret)
    assert secret is None or secret in KNOWN_DEFAULT_SECRETS
    problems = load_settings().problems()
    assert len(problems) == 1
    assert problems[0].startswith("JWT_SECRET: ")


def test_production_with_real_secrets_has_no_problems(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HIMS_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://hims:a-long-random-password@db/hims")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379")
    monkeypatch.setenv("JWT_SECRET", "x" * 48)
    assert load_settings().problems() == []


def test_development_accepts_the_development_secret():
    assert load_settings().problems() == []


def test_create_app_refuses_production_problems(monkeypatch: pytest.MonkeyPatch):
    from hims.app import create_app

    monkeypatch.setenv("HIMS_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://hims:a-long-random-password@db/hims")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379")
    monkeypatch.setenv("JWT_SECRET", "secret")
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        create_app()


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql://hims:s3cr3t@db:5432/hims") == "postgresql://hims:***@db:5432/hims"
    assert mask_url("postgresql://hims@db/hims") == "postgresql://hims@db/hims"


def test_comma_lists_are_plain_text_not_json(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("METRICS_ALLOW_NETWORKS", "10.0.0.0/8, 192.168.1.0/24")
    monkeypatch.setenv("DATABASE_READ_URLS", "postgresql://r1/h,postgresql://r2/h")
    settings = load_settings()
    assert settings.metrics_allow_networks == ["10.0.0.0/8", "192.168.1.0/24"]
    assert settings.database_read_urls == ["postgresql://r1/h", "postgresql://r2/h"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://u:p@h/db"),
        ("DATABASE_URL", "sqlite:///hims.db"),
        ("DATABASE_READ_URLS", "postgresql://r1/h,mysql://r2/h"),
        ("REDIS_URL", "localhost:6379"),
    ],
)
def test_urls_of_the_wrong_kind_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [line.split(":")[0] for line in caught.value.lines] == [name]
    # The rejected URL (which may hold a password) is not echoed back.
    assert "u:p@" not in caught.value.lines[0]
