"""AuditEvent: the PHI access log served read-only under /fhir/R4 (audit:read, not fhir:read)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import jwt
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from httpx import AsyncClient

from hims.settings import Settings
from tests.fhir.conftest import auth, create, patient


def _user_of(headers: dict[str, str]) -> str:
    token = headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def _log_count(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM phi_access_log"))
    finally:
        await conn.close()


async def _events(fhir: AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await fhir.get("/AuditEvent", params=params, headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    Bundle.model_validate(data)
    return data


async def test_api_calls_become_audit_events_for_compliance(
    fhir: AsyncClient, settings: Settings, database_url: str
) -> None:
    doctor = auth(settings, "physician")
    body = await create(fhir, patient())
    pid = body["id"]
    assert (await fhir.get(f"/Patient/{pid}", headers=doctor)).status_code == 200
    other = await create(fhir, patient(family="Other", given="Kofi"))

    compliance = auth(settings, "compliance")
    data = await _events(fhir, compliance, patient=f"Patient/{pid}")
    events = [e["resource"] for e in data["entry"]]
    assert len(events) == 2  # the create and the read, newest first
    for event in events:
        AuditEvent.model_validate(event)
        assert {"reference": f"Patient/{pid}"} in [x["what"] for x in event["entity"]]
        assert event["outcome"] == "0"
    read, created = events
    assert read["action"] == "R"
    assert read["subtype"][0]["code"] == "read"
    assert created["action"] == "C"
    assert created["subtype"][0]["code"] == "create"
    assert read["agent"][0]["who"]["identifier"]["value"] == _user_of(doctor)
    assert read["recorded"] >= created["recorded"]
    assert read["recorded"].startswith("20")
    # the bare id works too, and other patients are not in it
    same = await _events(fhir, compliance, patient=pid)
    assert [e["resource"]["id"] for e in same["entry"]] == [read["id"], created["id"]]
    assert other["id"] not in str(same)

    # agent, entity, action, outcome, date filters
    by_agent = await _events(fhir, compliance, agent=_user_of(doctor))
    assert [e["resource"]["id"] for e in by_agent["entry"]] == [read["id"]]
    by_entity = await _events(fhir, compliance, entity=f"Patient/{pid}", action="C")
    assert [e["resource"]["id"] for e in by_entity["entry"]] == [created["id"]]
    assert (await _events(fhir, compliance, outcome="4"))["entry"] == []
    assert len((await _events(fhir, compliance, date="ge2026-01-01", patient=pid))["entry"]) == 2
    assert (await _events(fhir, compliance, date="lt2000-01-01"))["entry"] == []
    oldest_first = await _events(fhir, compliance, patient=pid, _sort="date")
    assert [e["resource"]["id"] for e in oldest_first["entry"]] == [created["id"], read["id"]]
    assert (await _events(fhir, compliance, patient=pid, _summary="count"))["total"] == 2

    # read by id; reading the log writes no PHI access rows (no feedback loop)
    before = await _log_count(database_url)
    one = await fhir.get(f"/AuditEvent/{read['id']}", headers=compliance)
    assert one.status_code == 200
    assert one.json() == read
    AuditEvent.model_validate(one.json())
    assert (await fhir.get("/AuditEvent/999999999", headers=compliance)).status_code == 404
    assert await _log_count(database_url) == before
    # admins hold audit:read too
    assert (await fhir.get("/AuditEvent", headers=auth(settings, "admin"))).status_code == 200


async def test_physicians_cannot_read_the_audit_log(fhir: AsyncClient, settings: Settings) -> None:
    await create(fhir, patient())
    doctor = auth(settings, "physician")
    for path in ("/AuditEvent", "/AuditEvent/1", "/AuditEvent/1/_history", "/AuditEvent/1/_history/1"):
        response = await fhir.get(path, headers=doctor)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    # nor through a bundle GET entry, nor by including them into another search
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "AuditEvent"}}],
    }
    result = (await fhir.post("", json=bundle)).json()
    assert result["entry"][0]["response"]["status"].startswith("403")
    # a SMART scope limited to other types does not reach the log either, even for compliance
    scoped = auth(settings, "compliance", scope="user/Patient.read")
    assert (await fhir.get("/AuditEvent", headers=scoped)).status_code == 403
    assert (
        await fhir.get("/AuditEvent", headers=auth(settings, "compliance", scope="user/*.read"))
    ).status_code == 200
    included = await fhir.get("/Patient", params={"_revinclude": "AuditEvent:patient"})
    assert included.status_code == 400


async def test_writes_are_refused_and_change_nothing(
    fhir: AsyncClient, settings: Settings, database_url: str
) -> None:
    body = await create(fhir, patient())
    compliance = auth(settings, "compliance")
    event = (await _events(fhir, compliance))["entry"][0]["resource"]
    before = await _log_count(database_url)
    new = {k: v for k, v in event.items() if k not in ("id", "meta")}
    attempts = [
        await fhir.post("/AuditEvent", json=new),
        await fhir.put(f"/AuditEvent/{event['id']}", json={**event, "outcome": "8"}),
        await fhir.put("/AuditEvent?outcome=0", json=new),
        await fhir.delete(f"/AuditEvent/{event['id']}"),
        await fhir.patch(
            f"/AuditEvent/{event['id']}",
            content=b'[{"op":"replace","path":"/outcome","value":"8"}]',
            headers={"Content-Type": "application/json-patch+json"},
        ),
    ]
    for response in attempts:
        assert response.status_code == 405, response.text
        issue = response.json()["issue"][0]
        assert issue["details"]["coding"][0]["code"] == "read_only_type"
        assert "read-only" in issue["diagnostics"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Patient"}, "resource": patient()},
            {"request": {"method": "POST", "url": "AuditEvent"}, "resource": new},
        ],
    }
    rejected = await fhir.post("", json=transaction)
    assert rejected.status_code == 405
    assert "entry[1]" in rejected.json()["issue"][0]["diagnostics"]
    patients = await fhir.get("/Patient", params={"_summary": "count"})
    assert patients.json()["total"] == 1  # the Patient of the rejected transaction was not written
    # nothing changed in the log: the event reads back the same, no rows were added by the writes
    assert (await fhir.get(f"/AuditEvent/{event['id']}", headers=compliance)).json() == event
    # in a batch the AuditEvent entry fails on its own (batch semantics) and writes nothing
    someone_else = {
        "request": {"method": "POST", "url": "Patient"},
        "resource": patient(family="Batch", given="Kofi"),
    }
    batch = {**transaction, "type": "batch", "entry": [someone_else, transaction["entry"][1]]}
    result = (await fhir.post("", json=batch)).json()
    assert result["entry"][0]["response"]["status"].startswith("201")
    assert result["entry"][1]["response"]["status"].startswith("405")
    before += 1  # the batch's Patient create
    after_search = await _log_count(database_url)
    assert after_search == before  # _summary=count returns no patient data, so it logs nothing
    assert body["id"]


async def test_paging_follows_next_links(fhir: AsyncClient, settings: Settings) -> None:
    body = await create(fhir, patient())
    for _ in range(4):
        assert (await fhir.get(f"/Patient/{body['id']}")).status_code == 200
    compliance = auth(settings, "compliance")
    seen: list[str] = []
    data = await _events(fhir, compliance, patient=body["id"], _count=2)
    pages = 1
    while True:
        seen.extend(e["resource"]["id"] for e in data["entry"])
        nxt = [link["url"] for link in data["link"] if link["relation"] == "next"]
        if not nxt:
            break
        response = await fhir.get(nxt[0].removeprefix("http://testserver/fhir/R4"), headers=compliance)
        assert response.status_code == 200, response.text
        data = response.json()
        pages += 1
    assert pages == 3
    assert len(seen) == 5
    assert len(set(seen)) == 5
    assert seen == sorted(seen, key=int, reverse=True)


async def test_bad_search_values_are_400(fhir: AsyncClient, settings: Settings) -> None:
    compliance = auth(settings, "compliance")
    for params in (
        {"date": "ge2026-13-45"},
        {"agent": "not-a-uuid"},
        {"outcome": "7"},
        {"_sort": "outcome"},
        {"_cursor": "garbage"},
        {"patient": "Observation/1"},
    ):
        response = await fhir.get("/AuditEvent", params=params, headers=compliance)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    bad_date = await fhir.get("/AuditEvent", params={"date": "yesterday"}, headers=compliance)
    assert bad_date.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_date"
    unknown = await _events(fhir, compliance, foo="bar")
    assert unknown["entry"][-1]["search"]["mode"] == "outcome"
    strict = await fhir.get(
        "/AuditEvent", params={"foo": "bar"}, headers={**compliance, "Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert (await _events(fhir, compliance, agent=str(uuid.uuid4())))["entry"] == []
    empty = await _events(fhir, compliance, outcome="", action="")  # empty values filter nothing
    assert not [e for e in empty["entry"] if e.get("search", {}).get("mode") == "outcome"]
    no_history = await fhir.get("/AuditEvent/_history", headers=compliance)
    assert no_history.status_code == 405


async def test_capability_statement_lists_audit_event_read_only(fhir: AsyncClient) -> None:
    statement = (await fhir.get("/metadata")).json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    audit = resources["AuditEvent"]
    assert [i["code"] for i in audit["interaction"]] == ["read", "search-type"]
    assert audit["versioning"] == "no-version"
    assert {p["name"] for p in audit["searchParam"]} == {
        "_id",
        "date",
        "patient",
        "agent",
        "entity",
        "outcome",
        "action",
        "subtype",
    }
    assert not any(r.startswith("AuditEvent:") for r in resources["Patient"]["searchRevInclude"])
