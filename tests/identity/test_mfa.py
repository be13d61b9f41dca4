from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pyotp
from httpx import AsyncClient

from tests.identity.conftest import client_for
from tests.identity.factories import app_of, create_user_in, login


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next 30 s step (accepted within the ±1 step window; unlike now(), unspent)."""
    return totp.at(time.time() + 30)


async def _enrol(client: AsyncClient, headers: dict[str, str]) -> tuple[pyotp.TOTP, list[str]]:
    started = await client.post("/api/v1/auth/mfa/enrol", headers=headers)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/AROCORD-HIMS:")
    assert body["qr_svg"].lstrip().startswith("<svg")
    assert len(body["recovery_codes"]) == 10
    secret = parse_qs(urlparse(body["otpauth_uri"]).query)["secret"][0]
    totp = pyotp.TOTP(secret)
    bad = await client.post("/api/v1/auth/mfa/confirm", headers=headers, json={"code": "000000"})
    assert bad.status_code == 422
    confirmed = await client.post("/api/v1/auth/mfa/confirm", headers=headers, json={"code": totp.now()})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["mfa_enabled"] is True
    return totp, body["recovery_codes"]


async def test_enrolled_user_needs_a_totp_code_that_works_once(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="mfa.user", roles=["physician"])
    tokens = (await login(client, "mfa.user")).json()
    totp, _codes = await _enrol(client, bearer(tokens["access_token"]))
    no_code = await login(client, "mfa.user")
    assert no_code.status_code == 401
    assert no_code.json()["code"] == "mfa_code_required"
    wrong = await login(client, "mfa.user", totp="123456")
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_mfa_code"
    spent = await login(client, "mfa.user", totp=totp.now())
    assert spent.status_code == 401  # the code that confirmed enrolment is spent
    code = next_code(totp)
    assert (await login(client, "mfa.user", totp=code)).status_code == 200
    replay = await login(client, "mfa.user", totp=code)
    assert replay.status_code == 401  # a TOTP code is single use


async def test_recovery_codes_replace_a_lost_device_once_each(client: AsyncClient) -> None:
    await create_user_in(app_of(client), username="lost.phone", roles=["nurse"])
    tokens = (await login(client, "lost.phone")).json()
    _totp, codes = await _enrol(client, bearer(tokens["access_token"]))
    assert (await login(client, "lost.phone", totp=codes[0].upper())).status_code == 200
    assert (await login(client, "lost.phone", totp=codes[1])).status_code == 200
    assert (await login(client, "lost.phone", totp=codes[0])).status_code == 401


async def test_admin_resets_mfa_and_enrolment_cannot_be_repeated_while_on(client: AsyncClient) -> None:
    app = app_of(client)
    admin = await create_user_in(app, username="mfa.admin", roles=["admin"])
    user = await create_user_in(app, username="reset.me", roles=["nurse"])
    headers = bearer((await login(client, "reset.me")).json()["access_token"])
    await _enrol(client, headers)
    assert (await client.post("/api/v1/auth/mfa/enrol", headers=headers)).status_code == 409
    admin_headers = bearer((await login(client, admin.username)).json()["access_token"])
    reset = await client.post(f"/api/v1/users/{user.id}/mfa/reset", headers=admin_headers)
    assert reset.status_code == 200
    assert reset.json()["mfa_enabled"] is False
    assert (await login(client, "reset.me")).status_code == 200  # no code needed any more


async def test_admin_without_mfa_in_production_gets_an_enrolment_only_token(
    database_url, redis_url, tmp_path
) -> None:
    async with client_for(database_url, redis_url, tmp_path, hims_env="production") as http:
        await create_user_in(http.app, username="prod.admin", roles=["admin"])
        await create_user_in(http.app, username="prod.nurse", roles=["nurse"])
        nurse = (await login(http, "prod.nurse")).json()
        assert nurse["mfa_enrolment_required"] is False
        assert nurse["refresh_token"]
        limited = (await login(http, "prod.admin")).json()
        assert limited["mfa_enrolment_required"] is True
        assert limited["refresh_token"] is None
        headers = bearer(limited["access_token"])
        users = await http.get("/api/v1/users", headers=headers)
        assert users.status_code == 403  # only its own account until MFA is on
        me = await http.get("/api/v1/auth/me", headers=headers)
        assert me.json()["mfa_required"] is True
        assert me.json()["permissions"] == ["self"]
        totp, _ = await _enrol(http, headers)
        full = (await login(http, "prod.admin", totp=next_code(totp))).json()
        assert full["mfa_enrolment_required"] is False
        assert (await http.get("/api/v1/users", headers=bearer(full["access_token"]))).status_code == 200
        # The browser login refuses such an account clearly instead of a half-working session.
        await create_user_in(http.app, username="prod.operator", roles=["operator"])
        refused = await http.post(
            "/api/v1/auth/session",
            json={"username": "prod.operator", "password": "correct-horse-battery-staple-42"},
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "mfa_enrolment_required"
