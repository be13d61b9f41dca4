"""What FHIR clients rely on from the route table: which interaction answers, with which status,
error code and headers; who may call it; and the route template requests are counted under."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from prometheus_client import REGISTRY

from hims.settings import Settings
from tests.fhir.conftest import FHIR_JSON, auth, patient

BASE = "http://testserver"


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client at the server's root, without credentials."""
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def outcome(response: Response) -> tuple[int, str | None]:
    """The status and our stable error code (``issue[0].details.coding[0].code``)."""
    code = None
    if response.status_code >= 400 and response.content:
        assert response.headers["content-type"].startswith(FHIR_JSON)
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        code = body["issue"][0]["details"]["coding"][0]["code"]
    return response.status_code, code


async def test_crud_interactions_answer_with_their_status_code_and_headers(
    http: AsyncClient, settings: Settings
) -> None:
    writer = {**auth(settings, "physician"), "Content-Type": FHIR_JSON}
    nurse = auth(settings, "nurse")  # fhir:read, not fhir:write
    compliance = auth(settings, "compliance")  # audit:read, not fhir:read

    created = await http.post("/fhir/R4/Patient", json=patient(), headers=writer)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["location"] == f"{BASE}/fhir/R4/Patient/{pid}/_history/1"
    assert created.headers["etag"] == 'W/"1"'
    assert created.headers["last-modified"].endswith(" GMT")
    assert created.headers["x-request-id"]

    someone_else = patient(
        name=[{"family": "Minimal", "given": ["Ngozi"]}],
        birthDate="1993-11-02",
        identifier=[{"system": "urn:mrn", "value": "MRN-2"}],
    )
    quiet = {**writer, "Prefer": "return=minimal"}
    minimal = await http.post("/fhir/R4/Patient", json=someone_else, headers=quiet)
    assert (minimal.status_code, minimal.content) == (201, b"")
    assert minimal.headers["location"].endswith("/_history/1")

    read = await http.get(f"/fhir/R4/Patient/{pid}", headers=nurse)
    assert (read.status_code, read.json()["id"], read.headers["etag"]) == (200, pid, 'W/"1"')
    assert read.headers["content-type"].startswith(FHIR_JSON)
    elements = (await http.get(f"/fhir/R4/Patient/{pid}?_elements=gender", headers=nurse)).json()
    assert "gender" in elements
    assert "name" not in elements

    body = {**read.json(), "gender": "other"}
    updated = await http.put(f"/fhir/R4/Patient/{pid}", json=body, headers=writer)
    assert (updated.status_code, updated.headers["etag"]) == (200, 'W/"2"')
    assert updated.headers["location"].endswith(f"/Patient/{pid}/_history/2")
    stale = await http.put(f"/fhir/R4/Patient/{pid}", json=body, headers={**writer, "If-Match": 'W/"1"'})
    assert outcome(stale) == (412, "version_conflict")
    elsewhere = await http.put(f"/fhir/R4/Patient/{uuid.uuid4()}", json=body, headers=writer)
    assert outcome(elsewhere) == (400, "id_mismatch")

    patched = await http.patch(
        f"/fhir/R4/Patient/{pid}",
        json=[{"op": "replace", "path": "/gender", "value": "female"}],
        headers={**writer, "Content-Type": "application/json-patch+json"},
    )
    assert (patched.status_code, patched.headers["etag"]) == (200, 'W/"3"')
    assert patched.json()["gender"] == "female"
    plain_json = await http.patch(f"/fhir/R4/Patient/{pid}", json=[], headers=writer)
    assert outcome(plain_json) == (415, "unsupported_media_type")

    a_third = patient(
        name=[{"family": "Conditional", "given": ["Tunde"]}],
        birthDate="1961-04-09",
        identifier=[{"system": "urn:mrn", "value": "MRN-3"}],
    )
    conditional = await http.put("/fhir/R4/Patient?identifier=urn:mrn|none", json=a_third, headers=writer)
    assert conditional.status_code == 201

    assert outcome(await http.post("/fhir/R4/Patient", json=patient(), headers=nurse)) == (
        403,
        "permission_denied",
    )
    anonymous = await http.post("/fhir/R4/Patient", json=patient())
    assert outcome(anonymous) == (401, "not_authenticated")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    xml = await http.post("/fhir/R4/Patient", content=b"<x/>", headers={**writer, "Content-Type": "text/xml"})
    assert outcome(xml) == (415, "unsupported_media_type")
    assert outcome(await http.post("/fhir/R4/Patient", content=b"{", headers=writer)) == (400, "invalid_json")
    invalid = await http.post("/fhir/R4/Patient", json=patient(birthDate="not-a-date"), headers=writer)
    assert outcome(invalid) == (422, "invalid_date")
    unknown_type = await http.post("/fhir/R4/Nonsense", json={"resourceType": "Nonsense"}, headers=writer)
    assert outcome(unknown_type) == (404, "unknown_resource_type")
    missing = await http.get(f"/fhir/R4/Patient/{uuid.uuid4()}", headers=nurse)
    assert outcome(missing) == (404, "resource_not_found")
    assert outcome(await http.get("/fhir/R4/Patient/a%20b", headers=nurse)) == (404, "resource_not_found")
    not_clinical = await http.get(f"/fhir/R4/Patient/{pid}", headers=compliance)
    assert outcome(not_clinical) == (403, "permission_denied")
    assert (await http.get("/fhir/R4/Patient/_history", headers=nurse)).json()["type"] == "history"

    assert (await http.delete(f"/fhir/R4/Patient/{pid}", headers=writer)).status_code == 204
    assert (await http.delete(f"/fhir/R4/Patient/{pid}", headers=writer)).status_code == 204
    assert outcome(await http.get(f"/fhir/R4/Patient/{pid}", headers=nurse)) == (410, "resource_deleted")


async def test_audit_events_are_read_with_audit_read_only_and_never_written(
    http: AsyncClient, settings: Settings
) -> None:
    compliance = auth(settings, "compliance")  # audit:read, not fhir:read
    nurse = auth(settings, "nurse")  # fhir:read, not audit:read
    writer = {**auth(settings, "physician"), "Content-Type": FHIR_JSON}
    # AuditEvent has routes of its own, before the generic ones that need fhir:read.
    assert (await http.get("/fhir/R4/AuditEvent", headers=compliance)).json()["type"] == "searchset"
    searched = await http.post("/fhir/R4/AuditEvent/_search", data={"_count": "1"}, headers=compliance)
    assert searched.json()["type"] == "searchset"
    some_id = f"/fhir/R4/AuditEvent/{uuid.uuid4()}"
    assert outcome(await http.get(some_id, headers=compliance)) == (404, "resource_not_found")
    assert outcome(await http.get(some_id, headers=nurse)) == (403, "permission_denied")
    assert outcome(await http.get("/fhir/R4/AuditEvent", headers=nurse)) == (403, "permission_denied")
    assert outcome(await http.get("/fhir/R4/AuditEvent/_history", headers=compliance)) == (
        405,
        "interaction_not_supported",
    )
    patch_json = {**writer, "Content-Type": "application/json-patch+json"}
    for method, headers in (("PUT", writer), ("PATCH", patch_json), ("DELETE", writer)):
        refused = await http.request(method, some_id, json={"resourceType": "AuditEvent"}, headers=headers)
        assert outcome(refused) == (405, "read_only_type"), method
    created = await http.post("/fhir/R4/AuditEvent", json={"resourceType": "AuditEvent"}, headers=writer)
    assert outcome(created) == (405, "read_only_type")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("HEAD", "/fhir/R4/Patient/{pid}", "GET"),
        ("OPTIONS", "/fhir/R4/Patient/{pid}", "GET"),
        ("POST", "/fhir/R4/Patient/{pid}", "GET"),
        ("PATCH", "/fhir/R4/Patient", "GET"),
        ("GET", "/fhir/R4/Patient/_search", "POST"),
        ("HEAD", "/fhir/R4/metadata", "GET"),
        ("DELETE", "/fhir/R4/metadata", "GET"),
        ("POST", "/fhir/R4/$export", "GET"),
        ("GET", "/fhir/R4", "POST"),
        ("GET", "/fhir/R4/", "POST"),
    ],
)
async def test_a_method_a_path_does_not_serve_is_405_with_allow(
    http: AsyncClient, settings: Settings, method: str, path: str, allow: str
) -> None:
    response = await http.request(method, path.format(pid=uuid.uuid4()), headers=auth(settings, "physician"))
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert outcome(response) == (405, "method_not_allowed")


async def test_the_base_address_takes_bundles_with_and_without_a_slash(
    http: AsyncClient, settings: Settings
) -> None:
    entry = {"request": {"method": "GET", "url": "Patient"}}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
    writer = {**auth(settings, "physician"), "Content-Type": FHIR_JSON}
    for path in ("/fhir/R4", "/fhir/R4/"):
        answered = await http.post(path, json=batch, headers=writer)
        assert (answered.status_code, answered.json()["type"]) == (200, "batch-response"), path
        assert outcome(await http.post(path, json=batch)) == (401, "not_authenticated")
    scoped = {**auth(settings, "physician", scope="user/*.read"), "Content-Type": FHIR_JSON}
    assert outcome(await http.post("/fhir/R4", json=batch, headers=scoped)) == (403, "insufficient_scope")


async def test_paths_outside_the_api_are_404_and_a_trailing_slash_redirects(http: AsyncClient) -> None:
    for path in ("/fhir/R4/patient", "/fhir/R4/Patient/a/b/c", "/fhir/R4/$nothing", "/fhir/R5/Patient"):
        assert outcome(await http.get(path)) == (404, "not_found"), path
    redirected = await http.get("/fhir/R4/Patient/")
    assert (redirected.status_code, redirected.headers["location"]) == (307, f"{BASE}/fhir/R4/Patient")


async def test_a_refused_permission_is_a_security_event(
    http: AsyncClient, settings: Settings, database_url: str
) -> None:
    denied = await http.delete(f"/fhir/R4/Patient/{uuid.uuid4()}", headers=auth(settings, "nurse"))
    assert outcome(denied) == (403, "permission_denied")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT detail FROM security_events WHERE event = 'access_denied'")
    finally:
        await conn.close()
    assert len(rows) == 1
    assert '"permission": "fhir:write"' in rows[0]["detail"]


@pytest.mark.parametrize(
    ("method", "path", "status", "route"),
    [
        ("GET", "/fhir/R4/Patient/{id}", "401", "/fhir/R4/{resource_type}/{id_}"),
        ("HEAD", "/fhir/R4/Patient/{id}", "405", "/fhir/R4/{resource_type}/{id_}"),
        ("POST", "/fhir/R4/Patient", "401", "/fhir/R4/{resource_type}"),
        ("GET", "/fhir/R4/AuditEvent/{id}", "401", "/fhir/R4/AuditEvent/{id_}"),
        ("GET", "/fhir/R4/Patient/{id}/_history", "401", "/fhir/R4/{resource_type}/{id_}/_history"),
        ("GET", "/fhir/R4/metadata", "200", "/fhir/R4/metadata"),
        ("POST", "/fhir/R4", "401", "/fhir/R4"),
        ("GET", "/fhir/R4", "405", "/fhir/R4"),
        ("POST", "/fhir/R4/", "401", "/fhir/R4/"),
        ("GET", "/fhir/R4/{id}/{id}/{id}", "404", "<unmatched>"),
    ],
)
async def test_requests_are_counted_under_their_route_template_never_their_path(
    http: AsyncClient, method: str, path: str, status: str, route: str
) -> None:
    labels = {"method": method, "route": route, "status": status}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    response = await http.request(method, path.format(id=uuid.uuid4()))
    assert response.status_code == int(status)
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
