"""Test helpers for patients, practitioners, appointments and documents (owned by CLINICAL-A).

`auth_headers` is the ONE place a token for a role is made: swap it when identity adds checks.
"""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient

from hims.settings import Settings
from tests.identity.factories import role_headers


def auth_headers(settings: Settings, role: str, *, user_id: uuid.UUID | None = None) -> dict[str, str]:
    """Authorization header with a real access token for a real, active user holding ``role``."""
    return role_headers(settings, role, user_id=user_id)


def patient_body(**overrides: Any) -> dict[str, Any]:
    """A valid PatientCreate body (unique-ish name unless overridden)."""
    body: dict[str, Any] = {
        "given_name": "Amara",
        "family_name": f"Okafor{uuid.uuid4().hex[:6]}",
        "date_of_birth": "1984-03-12",
        "sex_at_birth": "female",
        "phone": None,
        "email": None,
        "country": "NG",
    }
    body.update(overrides)
    return body


async def make_patient(client: AsyncClient, settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Register a patient through the API (as a receptionist) and return the body."""
    response = await client.post(
        "/api/v1/patients?allow_duplicate=true",
        json=patient_body(**overrides),
        headers=auth_headers(settings, "receptionist"),
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def make_facility(client: AsyncClient, settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A facility through the API (as an admin)."""
    body = {"code": f"F{uuid.uuid4().hex[:6]}", "name": "Test Hospital", "country": "GB", **overrides}
    response = await client.post("/api/v1/facilities", json=body, headers=auth_headers(settings, "admin"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def make_practitioner(client: AsyncClient, settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A practitioner through the API (as an admin)."""
    body = {"given_name": "Ngozi", "family_name": "Adeyemi", "profession": "physician", **overrides}
    response = await client.post("/api/v1/practitioners", json=body, headers=auth_headers(settings, "admin"))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def merge_patients(client: AsyncClient, settings: Settings, merged_id: Any, into_id: Any) -> None:
    """Merge ``merged_id`` into ``into_id`` through the API (as a receptionist), asserting 200."""
    response = await client.post(
        f"/api/v1/patients/{merged_id}/merge",
        json={"into": str(into_id)},
        headers=auth_headers(settings, "receptionist"),
    )
    assert response.status_code == 200, response.text
