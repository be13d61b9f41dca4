"""A small key-value store for cache, rate limits and token revocation.

Redis when ``REDIS_URL`` is set; otherwise an in-process store, which only works for a single
replica (said once in the logs at start).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog
from redis.asyncio import Redis

log = structlog.get_logger("hims.kv")


class KeyValueStore(Protocol):
    """What the app needs from Redis."""

    async def get(self, key: str) -> str | None:
        """Value of ``key`` or None."""

    async def get_many(self, *keys: str) -> list[str | None]:
        """Values of ``keys`` in one round trip (None for absent keys)."""

    async def set(self, key: str, value: str, *, ttl: float | None = None, only_new: bool = False) -> bool:
        """Store ``value``; with ``only_new`` only if the key is absent. True when stored."""

    async def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""

    async def incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter, starting its ttl window on first increment."""

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, None when absent or without expiry."""

    async def ping(self) -> None:
        """Raise when the store is unreachable."""

    async def close(self) -> None:
        """Release connections."""


class RedisStore:
    """`KeyValueStore` on Redis."""

    def __init__(self, url: str, password: str | None = None) -> None:
        self.redis: Redis = Redis.from_url(
            url,
            password=password,
            decode_responses=True,
            socket_timeout=2,
            socket_connect_timeout=2,
            health_check_interval=30,
        )

    async def get(self, key: str) -> str | None:
        value = await self.redis.get(key)
        return None if value is None else str(value)

    async def get_many(self, *keys: str) -> list[str | None]:
        values = await self.redis.mget(keys) if keys else []
        return [None if v is None else str(v) for v in values]

    async def set(self, key: str, value: str, *, ttl: float | None = None, only_new: bool = False) -> bool:
        px = int(ttl * 1000) if ttl else None
        return bool(await self.redis.set(key, value, px=px, nx=only_new))

    async def delete(self, *keys: str) -> int:
        return int(await self.redis.delete(*keys)) if keys else 0

    async def incr(self, key: str, *, ttl: float) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.pexpire(key, int(ttl * 1000), nx=True)
            count, _ = await pipe.execute()
        return int(count)

    async def ttl(self, key: str) -> float | None:
        ms = int(await self.redis.pttl(key))
        return ms / 1000 if ms > 0 else None

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()


class MemoryStore:
    """`KeyValueStore` in this process: correct for one replica, wrong for several."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._lock = asyncio.Lock()

    def _live(self, key: str) -> tuple[str, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= time.monotonic():
            del self._data[key]
            return None
        return item

    async def get(self, key: str) -> str | None:
        item = self._live(key)
        return None if item is None else item[0]

    async def get_many(self, *keys: str) -> list[str | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: str, *, ttl: float | None = None, only_new: bool = False) -> bool:
        async with self._lock:
            if only_new and self._live(key) is not None:
                return False
            self._data[key] = (value, time.monotonic() + ttl if ttl else None)
            return True

    async def delete(self, *keys: str) -> int:
        async with self._lock:
            removed = 0
            for key in keys:
                if self._live(key) is not None:
                    del self._data[key]
                    removed += 1
            return removed

    async def incr(self, key: str, *, ttl: float) -> int:
        async with self._lock:
            item = self._live(key)
            count = int(item[0]) + 1 if item else 1
            expiry = item[1] if item else time.monotonic() + ttl
            self._data[key] = (str(count), expiry)
            return count

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None or item[1] is None:
            return None
        return max(item[1] - time.monotonic(), 0.0)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()


def make_store(redis_url: str | None, password: str | None) -> KeyValueStore:
    """Redis when configured, else the in-process store with a warning."""
    if redis_url:
        return RedisStore(redis_url, password)
    log.warning(
        "redis_not_configured",
        detail="REDIS_URL is unset: cache, rate limits and revocations are in-process; "
        "run a single replica only",
    )
    return MemoryStore()
