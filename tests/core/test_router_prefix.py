"""Included routers turn down requests outside their path prefix before matching route by route."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from hims.app import skip_routers_by_prefix


async def test_routers_with_a_prefix_are_guarded_and_every_api_still_answers(app: FastAPI):
    # create_app already guarded them; a second pass finds every router it can guard again, so a
    # FastAPI upgrade that changes included routers shows up here instead of as a silent slowdown.
    included = [r for r in app.router.routes if hasattr(r, "original_router")]
    assert skip_routers_by_prefix(app) == len(included) >= 10
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200  # the ops router's second prefix
        assert (await http.get("/fhir/R4/metadata")).status_code == 200
        assert (await http.get("/fhir/R4/Patient/x")).status_code == 401  # matched, needs a login
        assert (await http.get("/api/v1/patients")).status_code == 401
        assert (await http.get("/api/v1/no-such-thing")).status_code == 404
        assert (await http.delete("/fhir/R4/metadata")).status_code == 405  # partial match kept
