from __future__ import annotations

import json

import pytest

from hims.core.kv import MemoryStore, RedisStore, make_store


async def test_without_redis_url_the_fallback_warns_it_is_single_replica(capfd: pytest.CaptureFixture[str]):
    from hims.core.logging import configure_logging

    configure_logging("info")
    store = make_store(None, None)
    assert isinstance(store, MemoryStore)
    records = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    warning = next(r for r in records if r["event"] == "redis_not_configured")
    assert warning["level"] == "warning"
    assert "single replica" in warning["detail"]


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_both_stores_behave_alike(kind: str, redis_url: str):
    store = MemoryStore() if kind == "memory" else RedisStore(redis_url)
    try:
        assert await store.set("k", "v", ttl=60)
        assert not await store.set("k", "w", only_new=True)
        assert await store.get("k") == "v"
        assert 0 < (await store.ttl("k") or 0) <= 60
        assert await store.incr("n", ttl=60) == 1
        assert await store.incr("n", ttl=60) == 2
        assert await store.delete("k", "missing") == 1
        assert await store.get("k") is None
    finally:
        await store.close()
