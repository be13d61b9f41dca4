from __future__ import annotations

from httpx import AsyncClient

from tests.identity.conftest import client_for
from tests.identity.factories import DEFAULT_PASSWORD, app_of, create_user_in


def _cookie_header(response, name: str) -> str:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(f"{name}="):
            return value
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


async def test_browser_login_sets_an_httponly_lax_session_cookie(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="web.user", roles=["receptionist"])
    response = await client.post(
        "/api/v1/auth/session", data={"username": "web.user", "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.text
    cookie = _cookie_header(response, "hims_session").lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # test environment: plain http allowed
    assert "path=/" in cookie
    csrf = response.json()["csrf_token"]
    assert response.cookies["hims_csrf"] == csrf
    me = await client.get("/api/v1/auth/me")  # the cookie jar sends the session
    assert me.status_code == 200
    assert me.json()["username"] == "web.user"


async def test_session_cookie_is_secure_outside_development(database_url, redis_url, tmp_path) -> None:
    async with client_for(database_url, redis_url, tmp_path, hims_env="staging") as http:
        await create_user_in(http.app, username="secure.user", roles=["nurse"])
        response = await http.post(
            "/api/v1/auth/session", json={"username": "secure.user", "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 200, response.text
        assert "secure" in _cookie_header(response, "hims_session").lower()


async def test_unsafe_requests_by_cookie_need_the_csrf_token(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="csrf.user", roles=["nurse"])
    login = await client.post(
        "/api/v1/auth/session", json={"username": "csrf.user", "password": DEFAULT_PASSWORD}
    )
    csrf = login.json()["csrf_token"]
    missing = await client.post("/api/v1/auth/logout")
    assert missing.status_code == 403
    assert missing.json()["code"] == "csrf_failed"
    wrong = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    assert (await client.get("/api/v1/auth/me")).status_code == 200  # still logged in
    out = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert (
        'hims_session=""' in _cookie_header(out, "hims_session")
        or "max-age=0" in _cookie_header(out, "hims_session").lower()
    )
    client.cookies.clear()
    client.cookies.set("hims_session", login.cookies["hims_session"])
    assert (await client.get("/api/v1/auth/me")).status_code == 401  # the server forgot the session


async def test_csrf_token_may_come_as_a_form_field(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="form.user", roles=["nurse"])
    login = await client.post(
        "/api/v1/auth/session", data={"username": "form.user", "password": DEFAULT_PASSWORD}
    )
    out = await client.post("/api/v1/auth/logout", data={"csrf_token": login.json()["csrf_token"]})
    assert out.status_code == 204, out.text


async def test_browser_login_failures_count_towards_lockout(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="web.locked", roles=["nurse"])
    for _ in range(3):
        bad = await client.post(
            "/api/v1/auth/session", data={"username": "web.locked", "password": "wrong-password-1"}
        )
        assert bad.status_code == 401
    refused = await client.post(
        "/api/v1/auth/session", data={"username": "web.locked", "password": DEFAULT_PASSWORD}
    )
    assert refused.status_code == 429
    assert "hims_session" not in refused.cookies
