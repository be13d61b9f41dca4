"""Authentication cost: logins per second and the per-request price of token verification.

Usage (real PostgreSQL and Redis; the database must be migrated):
    DATABASE_URL=postgresql://... REDIS_URL=redis://... \
        .venv/bin/python bench/auth.py [--logins 100] [--requests 2000]

Prints:
- argon2id cost in use, raw verify/s on one thread, and HTTP logins/s through the full stack
  (lockout lookups, row lock, verify, security event, token signing) with 1 and 4 concurrent clients;
- the per-request time of a route that needs a bearer token (JWT decode + revocation + cached
  account status from Redis) against the same route without authentication, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Annotated

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

from hims.app import create_app
from hims.core.permissions import Role
from hims.core.security import Actor, decode_token, require, require_public
from hims.identity import passwords, service
from hims.identity.schemas import UserCreate
from hims.settings import Settings

PASSWORD = "bench-password-violet-88"


def add_probe_routes(app: FastAPI) -> None:
    """Two identical tiny routes: one public, one needing a token."""

    @app.get("/bench/bare", dependencies=[require_public()])
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/authed")
    async def authed(actor: Annotated[Actor, require("self")]) -> dict[str, bool]:
        return {"ok": True}


async def timed(client: AsyncClient, url: str, n: int, headers: dict[str, str] | None = None) -> float:
    """Median of 5 batches: seconds per request."""
    batches = []
    per_batch = max(n // 5, 1)
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(per_batch):
            response = await client.get(url, headers=headers)
            assert response.status_code == 200, response.text
        batches.append((time.perf_counter() - start) / per_batch)
    return statistics.median(batches)


async def main(logins: int, requests: int) -> None:
    settings = Settings(
        database_url=SecretStr(os.environ["DATABASE_URL"]),
        redis_url=os.environ.get("REDIS_URL"),
        hims_env="test",
        log_level="warning",
    )
    app = create_app(settings)
    add_probe_routes(app)
    print(
        f"argon2id: m={settings.password_hash_memory_kib} KiB, t={settings.password_hash_time_cost}, "
        f"p={settings.password_hash_parallelism}; kv: {'redis' if settings.redis_url else 'in-process'}"
    )
    stored = passwords.hasher(settings).hash(PASSWORD)
    start = time.perf_counter()
    for _ in range(20):
        passwords.hasher(settings).verify(stored, PASSWORD)
    raw = 20 / (time.perf_counter() - start)
    print(f"raw argon2id verify: {raw:.1f}/s on one thread ({1000 / raw:.1f} ms each)")

    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    http = AsyncClient(transport=transport, base_url="http://bench")
    async with app.router.lifespan_context(app), http as client:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        async with app.state.db.transaction() as session:
            data = UserCreate(username=name, password=PASSWORD, roles=[Role.PHYSICIAN])
            await service.create_user(
                session=session, settings=settings, actor=Actor.system("bench"), data=data
            )
        body = {"username": name, "password": PASSWORD}
        await client.post("/api/v1/auth/login", json=body)  # warm up
        for concurrency in (1, 4):
            start = time.perf_counter()

            async def worker(count: int) -> None:
                for _ in range(count):
                    response = await client.post("/api/v1/auth/login", json=body)
                    assert response.status_code == 200, response.text

            await asyncio.gather(*(worker(logins // concurrency) for _ in range(concurrency)))
            rate = (logins // concurrency * concurrency) / (time.perf_counter() - start)
            print(f"HTTP login, {concurrency} concurrent client(s): {rate:.1f} logins/s ({logins} logins)")

        token = (await client.post("/api/v1/auth/login", json=body)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        start = time.perf_counter()
        for _ in range(requests):
            decode_token(settings, token, expected_type="access")
        decode_us = (time.perf_counter() - start) / requests * 1e6
        await timed(client, "/bench/bare", 200)
        await timed(client, "/bench/authed", 200, headers)
        bare = await timed(client, "/bench/bare", requests)
        authed = await timed(client, "/bench/authed", requests, headers)
        print(f"JWT decode+verify alone: {decode_us:.1f} µs")
        print(f"bare request: {bare * 1e6:.0f} µs; with token verification: {authed * 1e6:.0f} µs")
        print(
            f"token verification costs {(authed - bare) * 1e6:.0f} µs per request; "
            f"ratio authed/bare = {authed / bare:.2f}x ({requests} requests each)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.logins, args.requests))
