"""Synthea: all 28 bundles import as transactions; $everything gives back each patient's record."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from httpx import AsyncClient
from typer.testing import CliRunner

from hims.core.db import Database
from hims.core.security import Actor
from hims.fhir import bundles
from hims.fhir.importer import deduplicate, ensure_partitions, import_paths
from hims.patients.mrn import is_valid_mrn
from tests.fhir.conftest import patient
from tests.support import phi_rows

DATA = Path(__file__).parents[1] / "data" / "fhir" / "synthea"


def _bundles() -> list[dict[str, Any]]:
    return [orjson.loads(gzip.decompress(p.read_bytes())) for p in sorted(DATA.glob("*.json.gz"))]


def _expected(bundle: dict[str, Any], response: dict[str, Any]) -> tuple[str, set[str]]:
    """The new Patient id and every resource of that patient's compartment, as Type/id."""
    locations = [e["fullUrl"].lstrip("/") for e in response["entry"]]
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient_id = locations[[e["fullUrl"] for e in bundle["entry"]].index(patient_url)].split("/")[1]
    expected = set()
    for entry, location in zip(bundle["entry"], locations, strict=True):
        resource = entry["resource"]
        owners = [
            resource.get(k, {}).get("reference")
            for k in ("subject", "patient", "beneficiary")
            if isinstance(resource.get(k), dict)
        ]
        if resource["resourceType"] == "Patient" or patient_url in owners:
            expected.add(location)
    return patient_id, expected


async def test_all_synthea_bundles_import_and_everything_returns_them(
    db: Database, fhir: AsyncClient, database_url: str
) -> None:
    actor = Actor.system("test-import", channel="cli")
    records = []
    total = 0
    partition_years: set[int] = set()
    for bundle in _bundles():
        entries = bundle["entry"]
        deduplicate(entries)
        await ensure_partitions(db, entries, partition_years)
        async with db.transaction() as session:
            response = await bundles.transaction(session=session, actor=actor, entries=entries, base_url="")
        assert all(e["response"]["status"] in ("201 Created", "200 OK") for e in response["entry"])
        total += len(entries)
        records.append(_expected(bundle, response))
    assert total == 11138
    organizations = (await fhir.get("/Organization", params={"_summary": "count"})).json()["total"]
    assert organizations < 49  # repeated Organizations were stored once
    # Every Synthea Patient is a registered patient too (Synthea's MR identifier, a UUID, is too
    # long for an MRN, so each was given one of ours).
    # Ambulatory encounters, back to the 1940s, are consultations (their partitions were made).
    ambulatory = sum(
        1
        for bundle in _bundles()
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Encounter" and e["resource"]["class"]["code"] == "AMB"
    )
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id::text, mrn FROM patients")
        consultations = await conn.fetchval("SELECT count(*) FROM consultations")
        oldest = await conn.fetchval("SELECT min(started_at) FROM consultations")
    finally:
        await conn.close()
    assert {r["id"] for r in rows} == {patient_id for patient_id, _ in records}
    assert all(is_valid_mrn(r["mrn"]) for r in rows)
    assert consultations == ambulatory
    assert oldest.year < 1990
    for patient_id, expected in records:
        got: set[str] = set()
        url: str | None = f"/Patient/{patient_id}/$everything?_count=200"
        while url:
            page = (await fhir.get(url)).json()
            got |= {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]}
            nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
            url = nxt[0].split("/fhir/R4", 1)[1] if nxt else None
        assert expected <= got, sorted(expected - got)[:5]


def test_cli_imports_bundles_and_reports_rate(database_url: str, tmp_path: Path) -> None:
    from hims.cli import app

    path = sorted(DATA.glob("*.json.gz"))[0]
    result = CliRunner().invoke(
        app, ["fhir", "import", str(path)], env={"DATABASE_URL": database_url, "HIMS_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "resources/s" in result.output
    assert "0 failed" in result.output
    # Every record it wrote is logged as the import's.
    channels = {r["channel"] for r in asyncio.run(phi_rows(database_url))}
    assert channels == {"import"}


async def test_transaction_with_one_bad_entry_writes_nothing(fhir: AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": {"resourceType": "Patient", "name": [{"family": "Alpha"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                    "effectiveDateTime": "2020-02-31",
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 422
    assert response.json()["resourceType"] == "OperationOutcome"
    count = (await fhir.get("/Patient", params={"_summary": "count"})).json()
    assert count["total"] == 0


async def test_transaction_resolves_references_and_conditionals(fhir: AsyncClient, partitions: str) -> None:
    npi = "http://hl7.org/fhir/sid/us-npi|999"
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "999"}],
        "name": [{"family": "Nine", "given": ["Nina"]}],
    }
    first = await fhir.post("/Practitioner", json=practitioner)
    assert first.status_code == 201
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                "resource": patient(family="Beta", given="Bola"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:33333333-3333-3333-3333-333333333333",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"},
                    "participant": [{"individual": {"reference": f"Practitioner?identifier={npi}"}}],
                    "period": {"start": "2025-05-01T09:00:00Z", "end": "2025-05-01T09:20:00Z"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": practitioner,
                "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": f"identifier={npi}"},
            },
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "201 Created", "200 OK"]
    encounter_id = body["entry"][1]["response"]["location"].split("/")[1]
    patient_id = body["entry"][0]["response"]["location"].split("/")[1]
    encounter = (await fhir.get(f"/Encounter/{encounter_id}")).json()
    assert encounter["subject"]["reference"] == f"Patient/{patient_id}"
    assert encounter["participant"][0]["individual"]["reference"] == f"Practitioner/{first.json()['id']}"


async def test_batch_entries_are_independent(fhir: AsyncClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": patient(family="Gamma", given="Gina"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "birthDate": "not-a-date"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient?family=gamma"}},
        ],
    }
    response = await fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"].startswith("422")
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["resource"]["type"] == "searchset"
    assert len(entries[2]["resource"]["entry"]) == 1


def test_cli_imports_bulk_ndjson_in_dependency_order(database_url: str, tmp_path: Path) -> None:
    from hims.cli import app

    bulk = Path(__file__).parents[1] / "data" / "fhir" / "bulk"
    result = CliRunner().invoke(
        app, ["fhir", "import", str(bulk)], env={"DATABASE_URL": database_url, "HIMS_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "0 failed, 1 skipped" in result.output
    assert "imported 193 resources" in result.output


async def test_everything_pages_and_filters_by_type(fhir: AsyncClient) -> None:
    created = await fhir.post("/Patient", json=patient(family="Pager", given="Pat"))
    pid = created.json()["id"]
    for n in range(5):
        await fhir.post(
            "/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"o{n}"},
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
    await fhir.post(
        "/Condition", json={"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"}}
    )
    seen: list[str] = []
    url: str | None = f"/Patient/{pid}/$everything?_count=3"
    pages = 0
    while url:
        page = (await fhir.get(url)).json()
        pages += 1
        seen += [e["resource"]["resourceType"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].split("/fhir/R4", 1)[1] if nxt else None
    assert pages == 3
    assert sorted(seen) == ["Condition"] + ["Observation"] * 5 + ["Patient"]
    only = (await fhir.get(f"/Patient/{pid}/$everything", params={"_type": "Condition"})).json()
    assert [e["resource"]["resourceType"] for e in only["entry"]] == ["Condition"]
    missing = await fhir.get("/Patient/nobody/$everything")
    assert missing.status_code == 404


async def test_concurrent_imports_store_shared_resources_once_and_never_fail(database_url: str) -> None:
    """The same files imported twice at once (two operators, or a re-run while one is going): the
    Organizations and Practitioners every Synthea bundle repeats are stored once, and collisions are
    retried, not errors."""
    files = sorted(DATA.glob("*.json.gz"))[:8]
    expected = {
        f"{e['resource']['resourceType']}|{e['resource']['identifier'][0]['value']}"
        for bundle in _bundles()[:8]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] in ("Organization", "Practitioner")
    }
    first, second = Database(database_url, pool_size=2), Database(database_url, pool_size=2)
    actor = Actor.system("test-import", channel="cli")
    try:
        # The same patients twice: registered twice on purpose (duplicate detection aside here).
        twice = {"allow_duplicate": True}
        stats = await asyncio.gather(
            import_paths(first, files, actor=actor, create_options=twice),
            import_paths(second, files, actor=actor, create_options=twice),
        )
    finally:
        await first.dispose()
        await second.dispose()
    assert [s.errors for s in stats] == [0, 0]
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM fhir_resources WHERE resource_type IN ('Organization', 'Practitioner')"
        )
    finally:
        await conn.close()
    assert stored == len(expected)


async def test_files_imported_side_by_side_load_as_they_do_one_by_one(database_url: str) -> None:
    """`jobs=3`: three files in flight on three connections, after every year's consultation
    partition was made up front; same resources, patients and consultations, no failures."""
    files = sorted(DATA.glob("*.json.gz"))[:8]
    bundles_in = _bundles()[:8]
    db = Database(database_url, pool_size=3)
    try:
        stats = await import_paths(db, files, actor=Actor.system("test-import", channel="cli"), jobs=3)
    finally:
        await db.dispose()
    assert (stats.files, stats.errors) == (8, 0)
    assert stats.resources == sum(len(b["entry"]) for b in bundles_in)
    ambulatory = sum(
        1
        for bundle in bundles_in
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Encounter" and e["resource"]["class"]["code"] == "AMB"
    )
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM patients") == 8
        assert await conn.fetchval("SELECT count(*) FROM consultations") == ambulatory
    finally:
        await conn.close()


class _Deadlock(Exception):
    """What a deadlock PostgreSQL broke looks like to `is_retryable_conflict`."""

    sqlstate = "40P01"


async def test_a_retried_transaction_starts_from_the_file_again(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import's transaction changes its entries in place (ids, meta, rewritten references);
    after a collision the retry must work on entries parsed again, not on what the rolled-back
    attempt left in them."""
    real = bundles.transaction
    attempts = 0

    async def collide_once(**kwargs: Any) -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        response = await real(**kwargs)
        if attempts == 1:
            raise _Deadlock
        return response

    monkeypatch.setattr(bundles, "transaction", collide_once)
    path = sorted(DATA.glob("*.json.gz"))[0]
    entries = orjson.loads(gzip.decompress(path.read_bytes()))["entry"]
    db = Database(database_url, pool_size=2)
    try:
        stats = await import_paths(db, [path], actor=Actor.system("test-import", channel="cli"))
    finally:
        await db.dispose()
    assert attempts == 2
    assert (stats.files, stats.resources, stats.errors) == (1, len(entries), 0)
