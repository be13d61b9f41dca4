"""The floor for `bench/fhir_crud.py`: the least a PHI-logged document API can do on this stack.

A bare Starlette app on the same uvicorn, asyncpg and PostgreSQL, answering the CRUD scenario's
requests with no FHIR logic, no authentication, no middleware and no ORM. Every request does
what any audited store must: reads are one statement that reads the document and writes an
access-log row; writes are one transaction holding the document change and its log row. What
`hims serve` reaches as a share of this is what our own code costs, on any machine.

    uvicorn --app-dir bench _crud_floor:app     (FLOOR_DATABASE_URL=postgresql://...)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_documents (
  kind text NOT NULL, id uuid NOT NULL, version int NOT NULL, body jsonb NOT NULL, PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS floor_access_log (
  id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), action text NOT NULL, target text NOT NULL
);
"""
_READ = (
    "WITH d AS (SELECT body::text AS body FROM floor_documents WHERE kind = $1 AND id = $2), "
    "l AS (INSERT INTO floor_access_log (action, target) SELECT 'read', $1 || '/' || $2 FROM d) "
    "SELECT body FROM d"
)
_LOG = "INSERT INTO floor_access_log (action, target) VALUES ($1, $2)"
pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(
        os.environ["FLOOR_DATABASE_URL"], min_size=2, max_size=int(os.environ.get("FLOOR_POOL", "20"))
    )
    yield
    await pool.close()


def _json(body: dict[str, object], status: int) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/fhir+json")


async def collection(request: Request) -> Response:
    kind = request.path_params["kind"]
    body = orjson.loads(await request.body())
    body["id"] = str(uuid.uuid4())
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO floor_documents VALUES ($1, $2, 1, $3::jsonb)",
            kind,
            body["id"],
            orjson.dumps(body).decode(),
        )
        await conn.execute(_LOG, "create", f"{kind}/{body['id']}")
    return _json(body, 201)


async def document(request: Request) -> Response:
    kind, id_ = request.path_params["kind"], uuid.UUID(request.path_params["id"])
    assert pool is not None
    async with pool.acquire() as conn:
        if request.method == "GET":
            text = await conn.fetchval(_READ, kind, id_)
            return Response(text, media_type="application/fhir+json") if text else Response(status_code=404)
        async with conn.transaction():
            if request.method == "PUT":
                body = orjson.loads(await request.body())
                await conn.execute(
                    "UPDATE floor_documents SET version = version + 1, body = $3::jsonb "
                    "WHERE kind = $1 AND id = $2",
                    kind,
                    id_,
                    orjson.dumps(body).decode(),
                )
                await conn.execute(_LOG, "update", f"{kind}/{id_}")
                return _json(body, 200)
            await conn.execute("DELETE FROM floor_documents WHERE kind = $1 AND id = $2", kind, id_)
            await conn.execute(_LOG, "delete", f"{kind}/{id_}")
            return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/fhir/R4/{kind}", collection, methods=["POST"]),
        Route("/fhir/R4/{kind}/{id}", document, methods=["GET", "PUT", "DELETE"]),
    ],
    lifespan=lifespan,
)
