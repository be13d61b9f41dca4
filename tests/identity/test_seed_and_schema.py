from __future__ import annotations

from sqlalchemy import select

from hims.core.db import Database
from hims.identity.models import User
from hims.identity.seed import seed_users
from hims.ops import migrate
from hims.seed import SeedReport
from tests.conftest import make_settings


async def test_seed_creates_one_demo_user_per_role_idempotently(
    db: Database, database_url, redis_url
) -> None:
    settings = make_settings(database_url, redis_url)
    for _ in range(2):
        report = SeedReport()
        async with db.transaction() as session:
            await seed_users(session, settings, report)
    assert report.created["users"] == 0  # second run created nothing
    assert len(report.logins) == 7
    async with db.transaction() as session:
        names = sorted((await session.execute(select(User.username))).scalars())
    assert names == sorted(
        f"demo.{r}"
        for r in ["admin", "physician", "nurse", "receptionist", "analyst", "compliance", "operator"]
    )


async def test_seed_refuses_demo_users_in_production(db: Database, database_url, redis_url) -> None:
    settings = make_settings(database_url, redis_url, hims_env="production")
    report = SeedReport()
    async with db.transaction() as session:
        await seed_users(session, settings, report)
        assert (await session.execute(select(User))).first() is None
    assert report.logins == []


def test_models_match_the_migrations(database_url) -> None:
    drift = migrate.verify(database_url)
    assert drift.ok, drift.problems
