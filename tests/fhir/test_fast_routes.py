"""The FHIR CRUD interactions dispatched by `hims.core.fastroutes` answer exactly as FastAPI's own
routing would: same route chosen, same dependencies, same errors, same metrics label."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client import REGISTRY

from hims.app import create_app
from hims.core.errors import Unauthorized
from hims.core.fastroutes import FastRoute
from hims.settings import Settings
from tests.fhir.conftest import FHIR_JSON, auth, patient


def fast_routes(app: FastAPI) -> list[FastRoute]:
    return [r for r in app.router.routes if isinstance(r, FastRoute)]


@pytest.fixture
async def plain_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The same application with FastAPI dispatching every route itself."""
    application = create_app(settings)
    application.router.routes[:] = [r for r in application.router.routes if not isinstance(r, FastRoute)]
    async with application.router.lifespan_context(application):
        yield application


def test_the_crud_interactions_and_only_they_are_dispatched_directly(app: FastAPI):
    taken = sorted((r.method, r.path_format) for r in fast_routes(app))
    assert taken == [
        ("DELETE", "/fhir/R4/{resource_type}/{id_}"),
        ("GET", "/fhir/R4/{resource_type}/{id_}"),
        ("PATCH", "/fhir/R4/{resource_type}/{id_}"),
        ("POST", "/fhir/R4/{resource_type}"),
        ("PUT", "/fhir/R4/{resource_type}"),
        ("PUT", "/fhir/R4/{resource_type}/{id_}"),
    ]


def _outcome(response: Any) -> tuple[int, str | None, str | None]:
    """Status, error code and media type: what a client branches on."""
    code = None
    if response.status_code >= 400 and response.content:  # HEAD answers carry no body
        body = response.json()
        issue = body.get("issue", [{}])[0]
        code = issue.get("details", {}).get("coding", [{}])[0].get("code") or issue.get("code")
    return response.status_code, code, response.headers.get("content-type")


async def _conversation(http: AsyncClient, settings: Settings) -> list[tuple[int, str | None, str | None]]:
    writer = {**auth(settings, "physician"), "Content-Type": FHIR_JSON}
    nurse = auth(settings, "nurse")  # fhir:read, not fhir:write
    compliance = auth(settings, "compliance")  # audit:read, not fhir:read
    created = await http.post("/fhir/R4/Patient", json=patient(), headers=writer)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["location"].endswith(f"/Patient/{pid}/_history/1")
    read = await http.get(f"/fhir/R4/Patient/{pid}", headers=nurse)
    assert read.json()["id"] == pid
    assert read.headers["etag"] == 'W/"1"'
    assert read.headers["x-request-id"]
    body = {**read.json(), "gender": "other"}
    responses = [
        created,
        read,
        await http.get(f"/fhir/R4/Patient/{pid}?_elements=gender", headers=nurse),
        await http.put(f"/fhir/R4/Patient/{pid}", json=body, headers=writer),
        await http.put(f"/fhir/R4/Patient/{pid}", json=body, headers={**writer, "If-Match": 'W/"1"'}),
        await http.put(f"/fhir/R4/Patient/{uuid.uuid4()}", json=body, headers=writer),  # id mismatch
        await http.post("/fhir/R4/Patient", json=patient(), headers=nurse),  # no fhir:write
        await http.post("/fhir/R4/Patient", json=patient()),  # no token
        await http.post("/fhir/R4/Patient", content=b"<x/>", headers={**writer, "Content-Type": "text/xml"}),
        await http.post("/fhir/R4/Patient", content=b"{", headers=writer),
        await http.post("/fhir/R4/Nonsense", json={"resourceType": "Nonsense"}, headers=writer),
        await http.get(f"/fhir/R4/Patient/{uuid.uuid4()}", headers=nurse),
        await http.get("/fhir/R4/Patient/a%20b", headers=nurse),
        await http.get(f"/fhir/R4/Patient/{pid}", headers=compliance),
        # AuditEvent has its own read route (audit:read): the generic read must not take it.
        await http.get(f"/fhir/R4/AuditEvent/{uuid.uuid4()}", headers=compliance),
        await http.get(f"/fhir/R4/AuditEvent/{uuid.uuid4()}", headers=nurse),
        await http.delete(f"/fhir/R4/AuditEvent/{uuid.uuid4()}", headers=writer),
        await http.patch(
            f"/fhir/R4/Patient/{pid}",
            json=[{"op": "replace", "path": "/gender", "value": "female"}],
            headers={**writer, "Content-Type": "application/json-patch+json"},
        ),
        await http.put("/fhir/R4/Patient?identifier=urn:mrn|none", json=patient(), headers=writer),
        await http.delete(f"/fhir/R4/Patient/{pid}", headers=writer),
        await http.delete(f"/fhir/R4/Patient/{pid}", headers=writer),
        await http.get(f"/fhir/R4/Patient/{pid}", headers=nurse),
        await http.head(f"/fhir/R4/Patient/{pid}", headers=nurse),
        await http.post(f"/fhir/R4/Patient/{pid}", json=patient(), headers=writer),  # no such interaction
        await http.get("/fhir/R4/Patient/_history", headers=nurse),
    ]
    return [_outcome(r) for r in responses]


async def test_fast_and_plain_dispatch_answer_every_request_alike(
    app: FastAPI, plain_app: FastAPI, settings: Settings
):
    answers = []
    for application in (app, plain_app):
        transport = ASGITransport(app=application, client=("127.0.0.1", 50000))
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            answers.append(await _conversation(http, settings))
    fast, plain = answers
    assert fast == plain
    # The conversation reached the outcomes it is meant to compare, not a wall of 401s.
    assert [status for status, _, _ in fast] == [
        201, 200, 200, 200, 412, 400, 403, 401, 415, 400, 404, 404, 404, 403,
        404, 403, 405, 200, 201, 204, 204, 410, 405, 405, 200,
    ]  # fmt: skip


async def test_requests_served_directly_are_counted_under_their_route_template(
    fhir: AsyncClient,
):
    labels = {"method": "GET", "route": "/fhir/R4/{resource_type}/{id_}", "status": "404"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    assert (await fhir.get(f"/Patient/{uuid.uuid4()}")).status_code == 404
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1


async def test_dependency_overrides_send_requests_back_to_fastapi(app: FastAPI, settings: Settings):
    read_route = next(r for r in fast_routes(app) if r.method == "GET").route
    actor = next(d.call for d in read_route.dependant.dependencies if d.name == "actor")

    async def nobody() -> None:
        raise Unauthorized("Overridden.", code="overridden")

    app.dependency_overrides[actor] = nobody
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        answer = await http.get(f"/fhir/R4/Patient/{uuid.uuid4()}", headers=auth(settings, "nurse"))
    assert _outcome(answer)[:2] == (401, "overridden")
