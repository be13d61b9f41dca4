"""The REST API refuses query parameters a route does not take: a misspelt filter must not fall
back to "no filter", answering (and logging) the first page of every patient."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from tests.identity.factories import role_headers
from tests.patients.factories import make_patient
from tests.support import phi_rows


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("receptionist", "/api/v1/patients?name=Okafor"),
        ("physician", "/api/v1/patients/{pid}/conditions?status=active"),
        ("physician", "/api/v1/patients/{pid}/chart?full=1"),
        ("admin", "/api/v1/users?rol=admin"),
    ],
)
async def test_unknown_query_parameters_are_400_and_disclose_nothing(
    client: AsyncClient, settings, database_url, role: str, path: str
) -> None:
    patient = await make_patient(client, settings)
    logged = await phi_rows(database_url)
    response = await client.get(path.format(pid=patient["id"]), headers=role_headers(settings, role))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "unknown_parameter"
    assert [e["field"] for e in body["errors"]] == [path.split("?")[1].split("=")[0]]
    assert await phi_rows(database_url) == logged


async def test_declared_parameters_still_filter(client: AsyncClient, settings) -> None:
    patient = await make_patient(client, settings)
    found = await client.get(
        "/api/v1/patients",
        params={"family": patient["family_name"][:3]},
        headers=role_headers(settings, "receptionist"),
    )
    assert found.status_code == 200, found.text
    assert patient["id"] in [p["id"] for p in found.json()["items"]]
