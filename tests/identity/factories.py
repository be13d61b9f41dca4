"""Reusable factories for every domain's tests: real users, real logins, real tokens.

`login_headers(client, role)` is THE way to get an authenticated client: it creates a user with
that role and logs in through the API, so every check the identity domain makes applies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.permissions import Role
from hims.core.security import Actor, encode_access_token
from hims.identity import service, tokens
from hims.identity.models import User
from hims.identity.schemas import UserCreate
from hims.settings import Settings

DEFAULT_PASSWORD = "correct-horse-battery-staple-42"


async def make_user(
    session: AsyncSession,
    *,
    username: str | None = None,
    roles: Sequence[str | Role] = (Role.PHYSICIAN,),
    password: str = DEFAULT_PASSWORD,
    email: str | None = None,
    display_name: str = "",
    practitioner_id: uuid.UUID | None = None,
    active: bool = True,
    settings: Settings | None = None,
) -> User:
    """A user created through the identity service (flushed, not committed)."""
    name = username or f"user-{uuid.uuid4().hex[:10]}"
    data = UserCreate(
        username=name,
        password=password,
        roles=[Role(r) for r in roles],
        email=email,
        display_name=display_name,
        practitioner_id=practitioner_id,
    )
    user = await service.create_user(
        session=session, settings=settings or Settings(), actor=Actor.system("tests"), data=data
    )
    if not active:
        user.active = False
        await session.flush()
    return user


def app_of(client: AsyncClient) -> FastAPI:
    """The in-process app behind a test client."""
    app = getattr(client, "app", None) or client._transport.app  # type: ignore[attr-defined]
    assert isinstance(app, FastAPI)
    return app


async def create_user_in(app: FastAPI, **kwargs: Any) -> User:
    """`make_user` in its own committed transaction on ``app``'s database."""
    settings: Settings = app.state.settings
    async with app.state.db.transaction() as session:
        return await make_user(session, settings=settings, **kwargs)


async def login(client: AsyncClient, username: str, password: str = DEFAULT_PASSWORD, **extra: Any) -> Any:
    """POST /api/v1/auth/login and return the response."""
    return await client.post("/api/v1/auth/login", json={"username": username, "password": password, **extra})


async def login_headers(
    client: AsyncClient, role: str | Role, *, username: str | None = None
) -> dict[str, str]:
    """Create a real user with ``role`` and log in through the API; returns the Authorization header."""
    user = await create_user_in(app_of(client), roles=[role], username=username)
    response = await login(client, user.username)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def token_headers(settings: Settings, user: User) -> dict[str, str]:
    """A bearer header minted directly for an existing user (fast; no login, no lockout counters)."""
    pair = tokens.issue_pair(settings, user_id=user.id, username=user.username, roles=list(user.roles))
    return {"Authorization": f"Bearer {pair.access_token}"}


def role_token(
    settings: Settings,
    roles: Sequence[str | Role],
    *,
    user_id: uuid.UUID | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Synchronous helper for code that cannot await: inserts an active user holding ``roles``
    (no password) into the test database and mints its access token directly (``extra`` claims,
    e.g. a SMART ``scope``, are added to the token).

    Runs the insert on its own thread and event loop, so it works inside async tests too.
    """
    assert settings.database_url is not None
    uid = user_id or uuid.uuid4()
    role_values = sorted({Role(r).value for r in roles})
    username = f"test-{'-'.join(role_values)}-{uid.hex[:12]}"
    url = settings.database_url.get_secret_value().replace("postgresql+asyncpg://", "postgresql://")

    async def insert() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO users (id, username, display_name, active, roles, mfa_enabled,"
                " recovery_code_hashes) VALUES ($1, $2, '', true, $3, false, '{}')"
                " ON CONFLICT (id) DO NOTHING",
                uid,
                username,
                role_values,
            )
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, insert()).result()
    return encode_access_token(settings, user_id=uid, username=username, roles=role_values, extra=extra)


def role_headers(settings: Settings, role: str | Role, *, user_id: uuid.UUID | None = None) -> dict[str, str]:
    """`role_token` for one role, as an Authorization header."""
    return {"Authorization": f"Bearer {role_token(settings, [role], user_id=user_id)}"}
