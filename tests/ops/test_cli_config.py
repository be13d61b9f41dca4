"""`hims` configuration behaviour, through the real console script with a controlled environment."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import ROOT, base_env, hims

PRODUCTION = {
    "HIMS_ENV": "production",
    "DATABASE_URL": "postgresql://hims:a-long-random-password@db.internal:5432/hims",
    "REDIS_URL": "redis://cache:6379/0",
    "JWT_SECRET": "k" * 48,
}


def test_invalid_variables_exit_2_with_one_line_each(tmp_path):
    env = base_env(tmp_path, PORT="http", JWT_EXPIRES_IN="1x", HIMS_ENV="prod")
    result = hims("config", "show", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert {line.split(":")[1].strip() for line in lines} == {"PORT", "JWT_EXPIRES_IN", "HIMS_ENV"}
    assert all(line.startswith("configuration error: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_invalid_variable_stops_serve_before_anything_starts(tmp_path):
    result = hims("serve", env=base_env(tmp_path, DATABASE_MAX_CONNECTIONS="many"))
    assert result.returncode == 2
    assert "DATABASE_MAX_CONNECTIONS" in result.stderr
    assert not (tmp_path / "var" / "postgres").exists()


def test_production_serve_refuses_default_jwt_secret_naming_it(tmp_path):
    for secret in ("your-secret-key", "password", "secret"):
        result = hims("serve", env=base_env(tmp_path, **{**PRODUCTION, "JWT_SECRET": secret}))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "configuration error: JWT_SECRET: missing or a known default secret; set a random value"
        ]


def test_production_serve_refuses_missing_jwt_secret(tmp_path):
    env = base_env(tmp_path, **PRODUCTION)
    del env["JWT_SECRET"]
    result = hims("serve", env=env)
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr


def test_config_show_masks_secrets(tmp_path):
    env = base_env(
        tmp_path,
        DATABASE_URL="postgresql://hims:hunter2@db:5432/hims",
        JWT_SECRET="jwt-secret-value-" + "z" * 20,
        SMTP_PASS="smtp-password-value",
        METRICS_TOKEN="metrics-token-value",
        REDIS_URL="redis://:redis-password-value@cache:6379/0",
    )
    result = hims("config", "show", "--json", env=env)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["DATABASE_URL"] == "postgresql://hims:***@db:5432/hims"
    assert values["JWT_SECRET"] == "********"
    assert values["SMTP_PASS"] == "********"
    assert values["JWT_EXPIRES_IN"] == "3600s"
    assert values["REDIS_URL"] == "redis://:***@cache:6379/0"
    table = hims("config", "show", env=env)
    assert table.returncode == 0
    secrets = ("hunter2", "jwt-secret-value", "smtp-password-value", "metrics-token-value", "redis-password")
    for secret in secrets:
        assert secret not in result.stdout
        assert secret not in table.stdout
    assert "postgresql://hims:***@db:5432/hims" in table.stdout


def test_config_check_lists_every_problem(tmp_path):
    env = base_env(
        tmp_path,
        HIMS_ENV="production",
        JWT_SECRET="your-secret-key",
        SMTP_PASS="password",
        STORAGE_BACKEND="s3",
    )
    result = hims("config", "check", env=env)
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem: ")]
    named = sorted(line.removeprefix("problem: ").split(":")[0] for line in problems)
    assert named == ["DATABASE_URL", "JWT_SECRET", "REDIS_URL", "SMTP_PASS", "STORAGE_S3_BUCKET"]


def test_config_check_passes_a_sound_production_configuration(tmp_path):
    result = hims("config", "check", env=base_env(tmp_path, **PRODUCTION))
    assert result.returncode == 0, result.stdout
    assert "configuration OK for production" in result.stdout


def test_configuration_docs_are_generated_from_settings():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    from hims.settings import Settings

    for name in Settings.model_fields:
        assert f"| `{name.upper()}`" in text
