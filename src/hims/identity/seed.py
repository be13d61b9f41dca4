"""Demo accounts: one user per role (development and test only)."""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.permissions import Role
from hims.core.security import Actor
from hims.identity import repository, service
from hims.identity.schemas import UserCreate
from hims.seed import SeedReport
from hims.settings import Settings

log = structlog.get_logger("hims.identity.seed")


def demo_password(role: Role) -> str:
    """The published demo password of ``role``'s account (refused in production)."""
    return f"demo-{role.value}-arocord-2026"


async def seed_users(session: AsyncSession, settings: Settings, report: SeedReport) -> None:
    """Create ``demo.<role>`` for every role that does not exist yet; list the logins."""
    if settings.hims_env not in ("development", "test"):
        log.warning("demo_users_refused", environment=settings.hims_env)
        return
    actor = Actor.system("seed", channel="cli")
    created = 0
    for role in Role:
        username = f"demo.{role.value}"
        if await repository.get_user_by_username(session, username) is None:
            data = UserCreate(
                username=username,
                password=demo_password(role),
                roles=[role],
                email=f"{username}@example.org",
                display_name=f"Demo {role.value}",
            )
            await service.create_user(session=session, settings=settings, actor=actor, data=data)
            created += 1
        report.logins.append((role.value, username, demo_password(role)))
    report.created["users"] = report.created.get("users", 0) + created
