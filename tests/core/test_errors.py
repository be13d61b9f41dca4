"""Every error leaves the app as an application/problem+json body with a stable code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient, Response
from pydantic import BaseModel, Field

from hims.app import create_app
from hims.core.errors import Conflict, unexpected_error
from hims.core.security import require_public
from hims.settings import Settings

SECRET_TEXT = "relation patients_secret_table at /srv/hims/internal.py"

router = APIRouter(prefix="/api/v1/test-errors", dependencies=[require_public()])


class Thing(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=0)


@router.post("/things")
async def create_thing(thing: Thing) -> dict[str, str]:
    return {"name": thing.name}


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError(SECRET_TEXT)


@router.get("/conflict")
async def conflict() -> None:
    raise Conflict("Already booked.", code="slot_taken")


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = create_app(settings)
    app.include_router(router)
    # raise_app_exceptions=False: Starlette re-raises after rendering the 500 (for the server's
    # log); the client must only ever see the rendered body.
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000), raise_app_exceptions=False)
    async with app.router.lifespan_context(app), AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def assert_problem(response: Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_unknown_route_is_404(http: AsyncClient):
    assert_problem(await http.get("/api/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_405_with_allow_header(http: AsyncClient):
    response = await http.delete("/health")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_invalid_json_is_422(http: AsyncClient):
    response = await http.post(
        "/api/v1/test-errors/things", content=b'{"name": "x",', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "invalid_json")


async def test_schema_violation_is_422_with_field_errors(http: AsyncClient):
    response = await http.post("/api/v1/test-errors/things", json={"name": "", "count": -1})
    body = assert_problem(response, 422, "validation_failed")
    fields = {error["field"]: error for error in body["errors"]}
    assert set(fields) == {"name", "count"}
    assert fields["count"]["in"] == "body"
    assert all(error["message"] and error["code"] for error in body["errors"])


async def test_missing_body_is_422(http: AsyncClient):
    body = assert_problem(await http.post("/api/v1/test-errors/things"), 422, "validation_failed")
    assert body["errors"][0]["in"] == "body"


async def test_domain_error_keeps_its_code(http: AsyncClient):
    body = assert_problem(await http.get("/api/v1/test-errors/conflict"), 409, "slot_taken")
    assert body["detail"] == "Already booked."


async def test_unexpected_exception_is_500_without_internals(http: AsyncClient):
    response = await http.get("/api/v1/test-errors/boom")
    body = assert_problem(response, 500, "internal_error")
    assert SECRET_TEXT not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert "internal.py" not in response.text
    assert body["detail"] == "An unexpected error occurred; it has been logged."


async def test_request_id_is_echoed_or_generated(http: AsyncClient):
    given = await http.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await http.get("/health")
    assert len(generated.headers["x-request-id"]) == 32
    # A request id that could inject into logs is replaced, not echoed.
    hostile = await http.get("/health", headers={"X-Request-ID": "a b\tc"})
    assert hostile.headers["x-request-id"] != "a b\tc"


async def test_unexpected_errors_reach_registered_trackers(http: AsyncClient):
    from hims.core.errors import UNEXPECTED_ERROR_HOOKS

    seen: list[BaseException] = []

    def broken(_exc: BaseException) -> None:
        raise OSError("tracker down")

    UNEXPECTED_ERROR_HOOKS.extend([broken, seen.append])
    try:
        response = await http.get("/api/v1/test-errors/boom")
    finally:
        del UNEXPECTED_ERROR_HOOKS[-2:]
    assert response.status_code == 500
    assert [type(e) for e in seen] == [RuntimeError]


async def test_a_real_deadlock_is_a_retryable_409_not_a_500(database_url: str) -> None:
    """PostgreSQL aborts one of two transactions that wait on each other; the client is told to retry."""
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    caught: list[BaseException] = []

    async def take(
        conn: asyncpg.Connection, mine: int, theirs: int, ready: asyncio.Event, go: asyncio.Event
    ) -> None:
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", mine)
                ready.set()
                await go.wait()
                await conn.execute("SELECT pg_advisory_xact_lock($1)", theirs)
        except asyncpg.PostgresError as exc:
            caught.append(exc)

    try:
        a_ready, b_ready, go = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(take(first, 9001, 9002, a_ready, go)),
            asyncio.create_task(take(second, 9002, 9001, b_ready, go)),
        ]
        await a_ready.wait()
        await b_ready.wait()
        go.set()
        await asyncio.gather(*tasks)
    finally:
        await first.close()
        await second.close()
    assert len(caught) == 1
    error = unexpected_error(caught[0])
    assert isinstance(error, Conflict)
    assert error.code == "concurrent_update"
    assert error.headers == {"Retry-After": "1"}
