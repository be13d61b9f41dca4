"""FHIR test helpers: a client with a real token for a role, and small resource factories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from hims.settings import Settings
from tests.identity.factories import role_token

FHIR_JSON = "application/fhir+json"


def token_for(settings: Settings, *, roles: list[str], scope: str | None = None) -> str:
    """A real access token for a real, active user holding ``roles`` (the one place tests mint
    FHIR tokens)."""
    extra = {"scope": scope} if scope is not None else None
    return role_token(settings, roles, extra=extra)


def auth(settings: Settings, *roles: str, scope: str | None = None) -> dict[str, str]:
    """Authorization headers for ``roles`` (physician by default)."""
    return {"Authorization": f"Bearer {token_for(settings, roles=list(roles) or ['physician'], scope=scope)}"}


@pytest.fixture
async def fhir(app: FastAPI, settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client on /fhir/R4 authenticated as a physician (fhir:read + fhir:write)."""
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    headers = {**auth(settings, "physician", "operator"), "Content-Type": FHIR_JSON}
    async with AsyncClient(
        transport=transport, base_url="http://testserver/fhir/R4", headers=headers
    ) as http:
        yield http


def patient(*, family: str = "Okafor", given: str = "Adaeze", **overrides: Any) -> dict[str, Any]:
    """A minimal Patient (registering two at once takes two names: duplicate detection applies)."""
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1980-05-17",
        "address": [{"line": ["1 Main St"], "city": "Lagos", "country": "NG"}],
        "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
    }
    body.update(overrides)
    return body


async def create(http: AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    """POST ``resource`` and return the stored body (asserting 201)."""
    response = await http.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data
