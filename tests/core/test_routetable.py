"""A route table refuses a malformed entry when it is built, and gives each endpoint what it names:
an authorized actor, and a session committed when the endpoint returns, rolled back when it fails."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from hims.app import create_app
from hims.core import routetable
from hims.core.errors import Conflict
from hims.core.routetable import PUBLIC, Entry, RouteTable
from hims.core.security import Actor
from hims.settings import Settings
from tests.identity.factories import role_headers


async def _note(session: AsyncSession, actor: Actor, event: str) -> None:
    await session.execute(
        text(
            "INSERT INTO security_events (event, outcome, username, detail) VALUES (:e, 'success', :u, '{}')"
        ),
        {"e": event, "u": actor.username},
    )


async def kept(session: AsyncSession, actor: Actor, event: str) -> Response:
    """Writes a row and answers."""
    await _note(session, actor, event)
    return Response(status_code=204)


async def undone(session: AsyncSession, actor: Actor, event: str) -> Response:
    """Writes a row, then fails."""
    await _note(session, actor, event)
    raise Conflict("Changed my mind.", code="changed_mind")


async def hello(request: Request) -> Response:
    """A public endpoint."""
    return Response(request.url.path)


TABLE = RouteTable(
    "/tabletest",
    [
        Entry("POST", "/kept/{event}", "audit:read", kept),
        Entry("POST", "/undone/{event}", "audit:read", undone),
        Entry("GET", "/hello", PUBLIC, hello),
    ],
)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[AsyncClient]:
    """The app with the test table installed."""
    app: FastAPI = create_app(settings)
    routetable.install(app, TABLE)
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


async def _events(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return [r["event"] for r in await conn.fetch("SELECT event FROM security_events ORDER BY id")]
    finally:
        await conn.close()


async def test_the_session_commits_when_the_endpoint_returns_and_rolls_back_when_it_fails(
    http: AsyncClient, settings: Settings, database_url: str
) -> None:
    auditor = role_headers(settings, "compliance")
    assert (await http.post("/tabletest/kept/first", headers=auditor)).status_code == 204
    failed = await http.post("/tabletest/undone/second", headers=auditor)
    assert (failed.status_code, failed.json()["code"]) == (409, "changed_mind")
    assert await _events(database_url) == ["first"]


async def test_an_entry_checks_its_permission_and_a_public_one_needs_no_login(
    http: AsyncClient, settings: Settings, database_url: str
) -> None:
    nurse = role_headers(settings, "nurse")  # no audit:read
    refused = await http.post("/tabletest/kept/x", headers=nurse)
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert (await http.post("/tabletest/kept/x")).json()["code"] == "not_authenticated"
    assert await _events(database_url) == ["access_denied"]  # the refusal, and nothing the endpoint wrote
    assert (await http.get("/tabletest/hello")).text == "/tabletest/hello"


async def _endpoint(resource_type: str, actor: Actor) -> Response:
    return Response()


async def _public(request: Request, actor: Actor) -> Response:
    return Response()


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (Entry("GET", "/{resource_type}", "fhir:read", hello), TypeError),  # a path parameter it lacks
        (Entry("GET", "/{other}", "fhir:read", _endpoint), TypeError),  # a parameter no one provides
        (Entry("GET", "/x", PUBLIC, _public), TypeError),  # an actor on a public route
        (Entry("GET", "/{resource_type}", "fhir:everything", _endpoint), ValueError),  # no such permission
    ],
)
def test_a_malformed_entry_is_refused_when_the_table_is_built(entry: Entry, error: type[Exception]) -> None:
    with pytest.raises(error):
        RouteTable(f"/t{uuid.uuid4().hex}", [entry])
