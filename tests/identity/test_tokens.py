from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from httpx import AsyncClient

from hims.core.security import ISSUER, encode_access_token
from hims.settings import Settings
from tests.conftest import make_settings, serve_in_process
from tests.identity.factories import app_of, create_user_in, login, token_headers

ME = "/api/v1/auth/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _tokens(client: AsyncClient, username: str = "tok.user") -> dict[str, str]:
    await create_user_in(app_of(client), username=username, roles=["nurse"])
    response = await login(client, username)
    assert response.status_code == 200, response.text
    return response.json()


async def test_refresh_rotates_and_each_refresh_token_works_once(client: AsyncClient) -> None:
    first = await _tokens(client)
    second = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    assert (await client.get(ME, headers=bearer(new["access_token"]))).status_code == 200
    third = await client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert third.status_code == 200


async def test_reusing_a_refresh_token_revokes_the_whole_family(client: AsyncClient) -> None:
    first = await _tokens(client)
    rotated = (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    # An attacker replays the stolen first token.
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["code"] == "token_reused"
    # The legitimate holder's newer tokens of that family die too.
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert again.status_code == 401
    assert (await client.get(ME, headers=bearer(rotated["access_token"]))).status_code == 401
    assert (await client.get(ME, headers=bearer(first["access_token"]))).status_code == 401
    # A fresh login starts a new, unaffected family.
    assert (await login(client, "tok.user")).status_code == 200


async def test_logout_revokes_access_token_and_refresh_family(client: AsyncClient) -> None:
    tokens = await _tokens(client)
    out = await client.post(
        "/api/v1/auth/logout",
        headers=bearer(tokens["access_token"]),
        json={"refresh_token": tokens["refresh_token"]},
    )
    assert out.status_code == 204
    me = await client.get(ME, headers=bearer(tokens["access_token"]))
    assert me.status_code == 401
    assert me.json()["code"] == "token_revoked"
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401


async def test_revocations_survive_an_app_restart_with_redis(database_url, redis_url, tmp_path) -> None:
    settings = make_settings(database_url, redis_url, hims_data_dir=tmp_path)
    async with serve_in_process(settings) as http:
        await create_user_in(http.app, username="restart.user", roles=["nurse"])
        tokens = (await login(http, "restart.user")).json()
        assert (
            await http.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204
    async with serve_in_process(settings) as http:  # a new process would see the same Redis
        assert (await http.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
        refreshed = await http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401


async def test_refresh_token_used_as_access_token_is_refused(client: AsyncClient) -> None:
    tokens = await _tokens(client)
    response = await client.get(ME, headers=bearer(tokens["refresh_token"]))
    assert response.status_code == 401
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["access_token"]})
    ).status_code == 401


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data, default=str).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _claims(user_id: uuid.UUID, **changes: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": str(user_id),
        "name": "forged",
        "roles": ["admin"],
        "typ": "access",
        "jti": uuid.uuid4().hex,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()) - 5,
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    claims.update(changes)
    return claims


@pytest.mark.parametrize(
    "forge",
    ["alg_none", "hs512", "wrong_secret", "expired", "not_yet_valid", "wrong_issuer", "garbage"],
)
async def test_forged_and_stale_tokens_are_refused(
    client: AsyncClient, settings: Settings, forge: str
) -> None:
    user = await create_user_in(app_of(client), username="target", roles=["nurse"])
    secret = settings.jwt_secret.get_secret_value()
    now = int(datetime.now(UTC).timestamp())
    token = {
        "alg_none": lambda: _unsigned(_claims(user.id)),
        "hs512": lambda: jwt.encode(_claims(user.id), secret * 2, algorithm="HS512"),
        "wrong_secret": lambda: jwt.encode(_claims(user.id), "another-secret-of-32-characters!!"),
        "expired": lambda: jwt.encode(_claims(user.id, iat=now - 7200, nbf=now - 7200, exp=now - 60), secret),
        "not_yet_valid": lambda: jwt.encode(_claims(user.id, nbf=now + 600), secret),
        "wrong_issuer": lambda: jwt.encode(_claims(user.id, iss="someone-else"), secret),
        "garbage": lambda: "not.a.jwt",
    }[forge]()
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_token_for_disabled_or_deleted_user_is_refused(client: AsyncClient, settings: Settings) -> None:
    app = app_of(client)
    admin = await create_user_in(app, username="boss", roles=["admin"])
    user = await create_user_in(app, username="leaver", roles=["nurse"])
    headers = token_headers(settings, user)
    assert (await client.get(ME, headers=headers)).status_code == 200  # status now cached
    disabled = await client.post(f"/api/v1/users/{user.id}/disable", headers=token_headers(settings, admin))
    assert disabled.status_code == 200
    assert (await client.get(ME, headers=headers)).status_code == 401  # cache invalidated at once
    ghost = encode_access_token(settings, user_id=uuid.uuid4(), username="ghost", roles=["admin"])
    assert (await client.get(ME, headers=bearer(ghost))).status_code == 401


async def test_roles_come_from_the_account_not_the_token(client: AsyncClient, settings: Settings) -> None:
    app = app_of(client)
    admin = await create_user_in(app, username="boss2", roles=["admin"])
    user = await create_user_in(app, username="promoted", roles=["nurse"])
    # A token claiming admin for a nurse grants nothing beyond the nurse's permissions.
    lying = encode_access_token(settings, user_id=user.id, username=user.username, roles=["admin"])
    assert (await client.get("/api/v1/users", headers=bearer(lying))).status_code == 403
    headers = token_headers(settings, user)
    assert (await client.get(ME, headers=headers)).json()["roles"] == ["nurse"]
    changed = await client.put(
        f"/api/v1/users/{user.id}/roles",
        headers=token_headers(settings, admin),
        json={"roles": ["compliance"]},
    )
    assert changed.status_code == 200
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 200  # compliance has user:read


async def test_missing_or_malformed_authorization_is_401(client: AsyncClient) -> None:
    assert (await client.get(ME)).status_code == 401
    assert (await client.get(ME, headers={"Authorization": "Basic abc"})).status_code == 401


async def test_in_process_fallback_store_revokes_too(database_url, tmp_path) -> None:
    settings = make_settings(database_url, None, hims_data_dir=tmp_path)  # no REDIS_URL
    async with serve_in_process(settings) as http:
        await create_user_in(http.app, username="solo.user", roles=["nurse"])
        tokens = (await login(http, "solo.user")).json()
        assert (await http.get(ME, headers=bearer(tokens["access_token"]))).status_code == 200
        assert (
            await http.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204
        assert (await http.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401


async def test_refresh_fails_once_the_account_is_disabled(client: AsyncClient, settings: Settings) -> None:
    app = app_of(client)
    admin = await create_user_in(app, username="boss3", roles=["admin"])
    tokens = await _tokens(client, "soon.gone")
    me = await client.get(ME, headers=bearer(tokens["access_token"]))
    disabled = await client.post(
        f"/api/v1/users/{me.json()['id']}/disable", headers=token_headers(settings, admin)
    )
    assert disabled.status_code == 200
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
