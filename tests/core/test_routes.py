"""The route walk lists route tables' routes with their permissions, and every REST path has one
owner: a route of one router never takes a request meant for another, whatever their order."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from httpx import ASGITransport, AsyncClient

from hims.core.routes import iter_routes


def test_the_fhir_table_is_listed_route_by_route_with_its_permissions(app: FastAPI) -> None:
    listed = {
        (method, route.path): route.policy.permission if route.policy else "none"
        for route in iter_routes(app)
        for method in route.methods
    }
    assert listed[("GET", "/fhir/R4/{resource_type:fhirtype}/{id_:fhirid}")] == "fhir:read"
    assert listed[("DELETE", "/fhir/R4/{resource_type:fhirtype}/{id_:fhirid}")] == "fhir:write"
    assert listed[("GET", "/fhir/R4/AuditEvent/{id_}")] == "audit:read"
    assert listed[("GET", "/fhir/R4/$export")] == "fhir:export"
    assert listed[("POST", "/fhir/R4")] == "fhir:write"
    assert listed[("GET", "/fhir/R4/metadata")] is None  # public
    assert ("HEAD", "/fhir/R4/metadata") not in listed
    assert not any(route.kind == "mount" and route.path.startswith("/fhir") for route in iter_routes(app))


def _overlap(a: str, b: str) -> bool:
    """Whether one request path can match both templates (a parameter matches one segment)."""
    left, right = a.strip("/").split("/"), b.strip("/").split("/")
    return len(left) == len(right) and all(
        x == y or x.startswith("{") or y.startswith("{") for x, y in zip(left, right, strict=True)
    )


def test_no_path_belongs_to_two_routers(app: FastAPI) -> None:
    owners = [
        (index, str(context.path))
        for index, entry in enumerate(app.router.routes)
        for context in iter_route_contexts([entry])
        if str(context.path).startswith("/api/")
    ]
    assert len({index for index, _ in owners}) >= 8
    shared = [
        (a, b)
        for i, (router_a, a) in enumerate(owners)
        for router_b, b in owners[i + 1 :]
        if router_a != router_b and _overlap(a, b)
    ]
    assert shared == []


async def test_the_openapi_document_describes_the_rest_api(app: FastAPI) -> None:
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        document = (await http.get("/openapi.json")).json()
    assert "/api/v1/patients/{patient_id}" in document["paths"]
    assert "/health" in document["paths"]
