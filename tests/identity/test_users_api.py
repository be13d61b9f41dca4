from __future__ import annotations

import uuid

from httpx import AsyncClient
from sqlalchemy import func, select

from hims.identity.models import SecurityEvent, User
from hims.settings import Settings
from tests.identity.factories import app_of, create_user_in, login, login_headers, token_headers


async def _count(client: AsyncClient, model: type) -> int:
    async with app_of(client).state.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


NEW_USER = {
    "username": "New.Nurse",
    "password": "violet-harbour-lantern-88",
    "roles": ["nurse"],
    "email": "new.nurse@example.org",
    "display_name": "New Nurse",
}


async def test_admin_creates_lists_and_reads_users(client: AsyncClient) -> None:
    headers = await login_headers(client, "admin")
    created = await client.post("/api/v1/users", headers=headers, json=NEW_USER)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["username"] == "new.nurse"
    assert body["roles"] == ["nurse"]
    assert not {"password", "password_hash"} & set(body)
    listed = await client.get("/api/v1/users", headers=headers)
    assert "new.nurse" in [u["username"] for u in listed.json()]
    one = await client.get(f"/api/v1/users/{body['id']}", headers=headers)
    assert one.json()["email"] == "new.nurse@example.org"
    assert (await login(client, "NEW.NURSE", "violet-harbour-lantern-88")).status_code == 200
    missing = await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404


async def test_usernames_are_unique_case_insensitively(client: AsyncClient) -> None:
    headers = await login_headers(client, "admin")
    assert (await client.post("/api/v1/users", headers=headers, json=NEW_USER)).status_code == 201
    again = await client.post("/api/v1/users", headers=headers, json={**NEW_USER, "username": "new.NURSE"})
    assert again.status_code == 409
    assert again.json()["code"] == "username_taken"


async def test_no_signup_without_an_admin_token(client: AsyncClient) -> None:
    anonymous = await client.post("/api/v1/users", json=NEW_USER)
    assert anonymous.status_code == 401
    nurse = await client.post("/api/v1/users", headers=await login_headers(client, "nurse"), json=NEW_USER)
    assert nurse.status_code == 403
    assert nurse.json()["code"] == "permission_denied"
    assert await _count(client, User) == 1  # only the nurse made by the helper


async def test_bad_user_input_is_422_and_writes_nothing(client: AsyncClient) -> None:
    headers = await login_headers(client, "admin")
    users_before, events_before = await _count(client, User), await _count(client, SecurityEvent)
    for body in (
        {**NEW_USER, "password": "password1234"},
        {**NEW_USER, "password": "new.nurse"},
        {**NEW_USER, "roles": ["superuser"]},
        {**NEW_USER, "roles": []},
        {**NEW_USER, "username": "x" * 151},
        {**NEW_USER, "display_name": "d" * 201},
        {**NEW_USER, "email": "not-an-email"},
        {**NEW_USER, "practitioner_id": str(uuid.uuid4())},
    ):
        response = await client.post("/api/v1/users", headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"]
    assert await _count(client, User) == users_before
    # Refused permission checks are the only events (none here: the admin may create users).
    assert await _count(client, SecurityEvent) == events_before


async def test_disable_enable_and_roles_are_security_events(client: AsyncClient, settings: Settings) -> None:
    app = app_of(client)
    admin = await create_user_in(app, username="chief", roles=["admin"])
    user = await create_user_in(app, username="staff.one", roles=["nurse"])
    headers = token_headers(settings, admin)
    assert (await client.post(f"/api/v1/users/{user.id}/disable", headers=headers)).json()["active"] is False
    assert (await login(client, "staff.one")).status_code == 401
    assert (await client.post(f"/api/v1/users/{user.id}/enable", headers=headers)).json()["active"] is True
    roles = await client.put(
        f"/api/v1/users/{user.id}/roles", headers=headers, json={"roles": ["physician", "nurse"]}
    )
    assert roles.json()["roles"] == ["nurse", "physician"]
    self_disable = await client.post(f"/api/v1/users/{admin.id}/disable", headers=headers)
    assert self_disable.status_code == 409
    self_demote = await client.put(
        f"/api/v1/users/{admin.id}/roles", headers=headers, json={"roles": ["nurse"]}
    )
    assert self_demote.status_code == 409
    events = await client.get("/api/v1/security-events", headers=headers, params={"user_id": str(user.id)})
    assert events.status_code == 200
    names = [e["event"] for e in events.json()]
    assert {"user_created", "user_disabled", "user_enabled", "role_changed"} <= set(names)
    changed = next(e for e in events.json() if e["event"] == "role_changed")
    assert changed["actor_username"] == "chief"
    assert changed["detail"] == {"before": ["nurse"], "after": ["nurse", "physician"]}


async def test_refused_permission_checks_are_recorded(client: AsyncClient) -> None:
    headers = await login_headers(client, "analyst")
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 403
    async with app_of(client).state.db.transaction() as session:
        denied = (
            (await session.execute(select(SecurityEvent).where(SecurityEvent.event == "access_denied")))
            .scalars()
            .one()
        )
    assert denied.detail == {"permission": "user:read", "method": "GET", "path": "/api/v1/users"}
