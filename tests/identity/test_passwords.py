from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import select, update

from hims.core.security import encode_access_token
from hims.identity import passwords
from hims.identity.models import User
from hims.settings import Settings
from tests.identity.conftest import Mailbox
from tests.identity.factories import DEFAULT_PASSWORD, app_of, create_user_in, login, make_user


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short-pass1", "password_too_short"),
        ("password1234", "password_too_common"),
        ("QWERTYUIOP123", "password_too_common"),
        ("dr.house.md.x", "password_is_username"),
    ],
)
def test_policy_refuses_weak_passwords(password: str, code: str) -> None:
    errors = passwords.policy_errors(password, username="dr.house.md.x")
    assert code in [e["code"] for e in errors]


def test_policy_accepts_a_long_uncommon_password() -> None:
    assert passwords.policy_errors("violet-harbour-lantern-88", username="someone") == []
    assert len(passwords.common_passwords()) >= 10000


async def test_hashes_are_argon2id_with_the_configured_cost(settings: Settings) -> None:
    stored = await passwords.hash_password(settings, "violet-harbour-lantern-88")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await passwords.verify_password(settings, stored, "violet-harbour-lantern-88")
    assert not await passwords.verify_password(settings, stored, "violet-harbour-lantern-89")


async def test_change_password_invalidates_earlier_tokens(client: AsyncClient, settings: Settings) -> None:
    app = app_of(client)
    user = await create_user_in(app, username="changer", roles=["nurse"])
    async with app.state.db.transaction() as session:  # the account was made a while ago
        await session.execute(
            update(User)
            .where(User.id == user.id)
            .values(password_changed_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    # A token issued a few seconds ago (token times are whole seconds, so no sleeping is needed).
    earlier = datetime.now(UTC) - timedelta(seconds=3)
    old = encode_access_token(settings, user_id=user.id, username=user.username, roles=["nurse"], now=earlier)
    headers = {"Authorization": f"Bearer {old}"}
    wrong = await client.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": "not-my-password", "new_password": "violet-harbour-lantern-88"},
    )
    assert wrong.status_code == 422
    weak = await client.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": DEFAULT_PASSWORD, "new_password": "password1234"},
    )
    assert weak.status_code == 422
    assert weak.json()["errors"][0]["code"] == "password_too_common"
    changed = await client.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": DEFAULT_PASSWORD, "new_password": "violet-harbour-lantern-88"},
    )
    assert changed.status_code == 200, changed.text
    fresh = {"Authorization": f"Bearer {changed.json()['access_token']}"}
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    assert (await client.get("/api/v1/auth/me", headers=fresh)).status_code == 200
    assert (await login(client, "changer")).status_code == 401
    assert (await login(client, "changer", "violet-harbour-lantern-88")).status_code == 200


def _link(box: Mailbox) -> str:
    assert len(box.messages) == 1
    body = box.messages[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
    match = re.search(r"https://hims\.example\.org/reset-password\?token=(\S+)", body)
    assert match, body
    return match.group(1)


async def test_password_reset_by_email_link_works_once(
    mail_client: AsyncClient, smtp_server: Mailbox, redis_url: str
) -> None:
    await create_user_in(
        mail_client.app, username="forgetful", roles=["nurse"], email="forgetful@example.org"
    )
    requested = await mail_client.post("/api/v1/auth/password-reset", json={"login": "forgetful@example.org"})
    assert requested.status_code == 202
    message = smtp_server.messages[0]
    assert message["To"] == "forgetful@example.org"
    assert message["From"] == "hims@example.org"
    token = _link(smtp_server)
    redis = Redis.from_url(redis_url)
    try:
        keys = await redis.keys("auth:reset:*")
        assert len(keys) == 1
        assert 1700 < await redis.ttl(keys[0]) <= 1800  # 30 minutes
    finally:
        await redis.aclose()
    weak = await mail_client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
    )
    assert weak.status_code == 422  # a weak password does not burn the link
    done = await mail_client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "violet-harbour-lantern-88"},
    )
    assert done.status_code == 204, done.text
    again = await mail_client.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": "another-long-passphrase-9"},
    )
    assert again.status_code == 422
    assert again.json()["code"] == "reset_token_invalid"
    assert (await login(mail_client, "forgetful", "violet-harbour-lantern-88")).status_code == 200


async def test_password_reset_does_not_reveal_unknown_accounts(
    mail_client: AsyncClient, smtp_server: Mailbox
) -> None:
    response = await mail_client.post("/api/v1/auth/password-reset", json={"login": "nobody@example.org"})
    assert response.status_code == 202
    assert smtp_server.messages == []


async def test_password_reset_without_smtp_is_a_clear_503(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/password-reset", json={"login": "someone"})
    assert response.status_code == 503
    assert response.json()["code"] == "smtp_not_configured"


async def test_old_hash_parameters_are_upgraded_at_login(client: AsyncClient, settings: Settings) -> None:
    weak = settings.model_copy(update={"password_hash_memory_kib": 8192, "password_hash_time_cost": 1})
    app = app_of(client)
    async with app.state.db.transaction() as session:
        user = await make_user(session, username="old.hash", roles=["nurse"], settings=weak)
    assert "m=8192,t=1" in (user.password_hash or "")
    assert (await login(client, "old.hash")).status_code == 200
    async with app.state.db.transaction() as session:
        stored = (await session.execute(select(User.password_hash).where(User.id == user.id))).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_password_reset_requests_are_rate_limited(
    mail_client: AsyncClient, smtp_server: Mailbox
) -> None:
    await create_user_in(mail_client.app, username="flooded", roles=["nurse"], email="flooded@example.org")
    for _ in range(5):
        response = await mail_client.post("/api/v1/auth/password-reset", json={"login": "flooded"})
        assert response.status_code == 202
    refused = await mail_client.post("/api/v1/auth/password-reset", json={"login": "flooded"})
    assert refused.status_code == 429
    assert refused.json()["code"] == "reset_rate_limited"
    assert int(refused.headers["Retry-After"]) <= 3600
    assert len(smtp_server.messages) == 5
