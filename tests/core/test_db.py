from __future__ import annotations

import pytest

from hims.core.db import Database, async_url


def test_urls_are_normalised_to_asyncpg():
    assert async_url("postgres://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"
    assert async_url("postgresql://u:p@h/d?sslmode=require") == "postgresql+asyncpg://u:p@h/d?ssl=require"
    with pytest.raises(ValueError, match="postgresql://"):
        async_url("mysql://h/d")


@pytest.mark.parametrize("mode", ["disable", "prefer"])
async def test_guide_style_sslmode_urls_connect(database_url: str, mode: str):
    db = Database(f"{database_url}?sslmode={mode}", pool_size=1)
    try:
        await db.ping()
    finally:
        await db.dispose()
