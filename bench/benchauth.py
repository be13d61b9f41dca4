"""A real staff account for benchmarks: the API checks that every token's user exists."""

from __future__ import annotations

import uuid

# Every table on the metadata, as each entry point has it: a users row refers to practitioners.
import hims.models  # noqa: F401
from hims.core.db import Database
from hims.core.permissions import Role
from hims.core.security import Actor
from hims.identity import service as identity_service
from hims.identity import tokens
from hims.identity.schemas import UserCreate
from hims.settings import Settings


async def bench_token(settings: Settings, url: str, role: Role = Role.PHYSICIAN) -> str:
    """Create an account holding ``role`` in the database at ``url``; return its access token."""
    db = Database(url, pool_size=1)
    try:
        async with db.transaction() as session:
            user = await identity_service.create_user(
                session=session,
                settings=settings,
                actor=Actor.system("bench"),
                data=UserCreate(
                    username=f"bench-{uuid.uuid4().hex[:10]}",
                    password=f"Bench-{uuid.uuid4().hex}",
                    roles=[role],
                ),
            )
    finally:
        await db.dispose()
    return tokens.issue_pair(
        settings, user_id=user.id, username=user.username, roles=list(user.roles)
    ).access_token
