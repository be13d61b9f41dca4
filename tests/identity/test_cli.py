from __future__ import annotations

import asyncio

from redis import Redis
from typer.testing import CliRunner

from hims.cli import app
from tests.conftest import make_settings

runner = CliRunner()


def _env(database_url: str, redis_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "HIMS_ENV": "test", "LOG_LEVEL": "warning"}


def _hims(env: dict[str, str], *args: str, stdin: str | None = None):
    return runner.invoke(app, list(args), input=stdin, env=env)


def test_first_admin_is_created_from_the_cli_with_the_password_on_stdin(database_url, redis_url) -> None:
    env = _env(database_url, redis_url)
    created = _hims(
        env,
        "users",
        "create",
        "--username",
        "First.Admin",
        "--role",
        "admin",
        "--email",
        "first@example.org",
        stdin="violet-harbour-lantern-88\n",
    )
    assert created.exit_code == 0, created.output
    assert "created user first.admin (admin)" in created.output
    listed = _hims(env, "users", "list")
    assert "first.admin" in listed.output
    assert "admin" in listed.output

    async def can_log_in() -> int:
        from tests.conftest import serve_in_process

        async with serve_in_process(make_settings(database_url, redis_url)) as http:
            response = await http.post(
                "/api/v1/auth/login",
                json={"username": "first.admin", "password": "violet-harbour-lantern-88"},
            )
            return response.status_code

    assert asyncio.run(can_log_in()) == 200


def test_the_password_is_never_an_argument_and_must_meet_the_policy(database_url, redis_url) -> None:
    env = _env(database_url, redis_url)
    argv = _hims(
        env,
        "users",
        "create",
        "--username",
        "x.user",
        "--role",
        "nurse",
        "--password",
        "violet-harbour-lantern-88",
    )
    assert argv.exit_code == 2  # no such option
    weak = _hims(env, "users", "create", "--username", "x.user", "--role", "nurse", stdin="password1234\n")
    assert weak.exit_code == 1
    assert "too common" in weak.output
    bad_role = _hims(
        env, "users", "create", "--username", "x.user", "--role", "root", stdin="violet-harbour-lantern-88\n"
    )
    assert bad_role.exit_code == 2


def test_disable_enable_and_unlock(database_url, redis_url) -> None:
    env = _env(database_url, redis_url)
    assert (
        _hims(
            env,
            "users",
            "create",
            "--username",
            "worker",
            "--role",
            "nurse",
            stdin="violet-harbour-lantern-88\n",
        ).exit_code
        == 0
    )
    disabled = _hims(env, "users", "disable", "WORKER")
    assert disabled.exit_code == 0
    assert "disabled user worker" in disabled.output
    assert "no" in _hims(env, "users", "list").output
    assert _hims(env, "users", "enable", "worker").exit_code == 0
    redis = Redis.from_url(redis_url)
    try:
        redis.set("auth:lock:user:worker", "1", ex=3600)
        redis.set("auth:lock:ip:10.1.2.3", "1", ex=3600)
        unlocked = _hims(env, "users", "unlock", "worker")
        assert unlocked.exit_code == 0, unlocked.output
        assert redis.get("auth:lock:user:worker") is None
        assert _hims(env, "users", "unlock", "--ip", "10.1.2.3").exit_code == 0
        assert redis.get("auth:lock:ip:10.1.2.3") is None
    finally:
        redis.close()
    missing = _hims(env, "users", "disable", "nobody")
    assert missing.exit_code == 1
    assert "No user named" in missing.output
