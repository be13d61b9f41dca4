from __future__ import annotations

import statistics
import time

from httpx import AsyncClient
from sqlalchemy import func, select

from hims.identity.models import SecurityEvent, User
from tests.identity.conftest import client_for
from tests.identity.factories import DEFAULT_PASSWORD, app_of, create_user_in, login


async def _events(client: AsyncClient, event: str | None = None) -> list[SecurityEvent]:
    async with app_of(client).state.db.transaction() as session:
        query = select(SecurityEvent).order_by(SecurityEvent.id)
        if event:
            query = query.where(SecurityEvent.event == event)
        return list((await session.execute(query)).scalars().all())


async def test_login_returns_tokens_and_me_describes_the_caller(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="Dr.Okafor", roles=["physician"], email="o@example.org")
    response = await login(client, "dr.okafor")  # usernames are case-insensitive
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"]
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    data = me.json()
    assert data["username"] == "dr.okafor"
    assert data["roles"] == ["physician"]
    assert "consultation:sign" in data["permissions"]
    assert not {"password_hash", "mfa_secret", "recovery_code_hashes"} & set(data)
    assert [e.event for e in await _events(client, "login_succeeded")] == ["login_succeeded"]


async def test_unknown_user_and_wrong_password_get_the_same_401(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="nurse.ada", roles=["nurse"])
    wrong = await login(client, "nurse.ada", "not-the-right-password")
    unknown = await login(client, "nobody.here", "not-the-right-password")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert wrong.json()["code"] == "invalid_credentials"
    events = await _events(client, "login_failed")
    assert [e.detail["reason"] for e in events] == ["bad_password", "unknown_user"]


async def test_unknown_user_takes_about_as_long_as_a_wrong_password(
    database_url, redis_url, tmp_path
) -> None:
    async with client_for(database_url, redis_url, tmp_path, login_max_failures=100) as http:
        await create_user_in(http.app, username="timing.user", roles=["nurse"])

        async def measure(username: str) -> float:
            samples = []
            for _ in range(5):
                start = time.perf_counter()
                response = await login(http, username, "wrong-password-for-timing")
                samples.append(time.perf_counter() - start)
                assert response.status_code == 401
            return statistics.median(samples)

        await measure("timing.user")  # warm up
        known, unknown = await measure("timing.user"), await measure("no.such.user")
        assert 0.33 < unknown / known < 3.0, (known, unknown)


async def test_disabled_user_cannot_log_in(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="gone.user", roles=["nurse"], active=False)
    response = await login(client, "gone.user")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


async def test_three_failures_lock_the_account_even_for_the_right_password(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="locked.user", roles=["receptionist"])
    for _ in range(3):
        assert (await login(client, "locked.user", "wrong-password-123")).status_code == 401
    refused = await login(client, "locked.user", DEFAULT_PASSWORD)
    assert refused.status_code == 429
    assert refused.json()["code"] == "login_locked"
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
    names = [e.event for e in await _events(client)]
    assert names.count("login_failed") == 3
    assert names.count("locked") == 2  # the account and the client address
    assert names[-1] == "login_refused_locked"


async def test_three_failures_from_one_address_lock_that_address(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="innocent", roles=["nurse"])
    for name in ("guess1", "guess2", "guess3"):
        assert (await login(client, name, "wrong-password-123")).status_code == 401
    refused = await login(client, "innocent", DEFAULT_PASSWORD)
    assert refused.status_code == 429
    locked = await _events(client, "locked")
    assert {e.detail["scope"] for e in locked} == {"ip"}


async def test_lockout_numbers_are_configurable(database_url, redis_url, tmp_path) -> None:
    async with client_for(
        database_url, redis_url, tmp_path, login_max_failures=5, login_lockout_seconds=120
    ) as http:
        await create_user_in(http.app, username="five.tries", roles=["nurse"])
        for _ in range(4):
            assert (await login(http, "five.tries", "wrong-password-123")).status_code == 401
        assert (await login(http, "five.tries")).status_code == 200  # 4 < 5: still allowed
        for _ in range(5):
            await login(http, "five.tries", "wrong-password-123")
        refused = await login(http, "five.tries")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) <= 120


async def test_admin_unlocks_an_account_through_the_api(client: AsyncClient) -> None:
    app = app_of(client)
    admin = await create_user_in(app, username="the.admin", roles=["admin"])
    victim = await create_user_in(app, username="victim", roles=["nurse"])
    admin_login = await login(client, admin.username)
    headers = {"Authorization": f"Bearer {admin_login.json()['access_token']}"}
    # Lock the account from another address so the admin's own address stays usable.
    from hims.core.kv import KeyValueStore

    kv: KeyValueStore = app.state.kv
    await kv.set(f"auth:lock:user:{victim.username}", "1", ttl=3600)
    assert (await login(client, "victim")).status_code == 429
    response = await client.post(f"/api/v1/users/{victim.id}/unlock", headers=headers)
    assert response.status_code == 200, response.text
    assert (await login(client, "victim")).status_code == 200
    unlocked = await _events(client, "unlocked")
    assert unlocked[0].actor_username == "the.admin"


async def test_malformed_and_overlong_input_is_refused_and_nothing_written(client: AsyncClient) -> None:
    bad_json = await client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422
    assert bad_json.headers["content-type"].startswith("application/problem+json")
    assert bad_json.json()["code"] == "invalid_json"
    long = await client.post("/api/v1/auth/login", json={"username": "u" * 151, "password": "x"})
    assert long.status_code == 422
    assert long.json()["errors"][0]["field"] == "username"
    huge = await client.post("/api/v1/auth/login", json={"username": "someone", "password": "p" * 257})
    assert huge.status_code == 422
    extra = await client.post("/api/v1/auth/login", json={"username": "a", "password": "b", "admin": True})
    assert extra.status_code == 422
    assert await _events(client) == []
    async with app_of(client).state.db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(User))).scalar_one() == 0
