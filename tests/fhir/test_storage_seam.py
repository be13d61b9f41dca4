"""The per-type storage seam: registering a Storage for a type routes its reads and writes there."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import asyncpg
import pytest
from httpx import AsyncClient

from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir import storage
from tests.fhir.conftest import create, patient


class CountingStorage(storage.JsonbStorage):
    """Delegates to the JSONB store and counts calls (stands in for a domain-table storage)."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0

    async def read(
        self, conn: asyncpg.Connection, resource_type: str, id_: str, *, lock: bool = False
    ) -> repo.Current | None:
        self.reads += 1
        return await super().read(conn, resource_type, id_, lock=lock)

    async def read_logged(
        self, conn: asyncpg.Connection, resource_type: str, id_: str, actor: Actor
    ) -> repo.Current | None:
        self.reads += 1
        return await super().read_logged(conn, resource_type, id_, actor)

    async def write(
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, actor: Actor
    ) -> set[tuple[str, str]]:
        self.writes += 1
        return await super().write(conn, writes, actor=actor)


@pytest.fixture
def counting() -> Iterator[CountingStorage]:
    custom = CountingStorage()
    before = storage.STORAGE["Patient"]
    storage.STORAGE["Patient"] = custom
    try:
        yield custom
    finally:
        storage.STORAGE["Patient"] = before


async def test_registered_storage_serves_its_type(fhir: AsyncClient, counting: CountingStorage) -> None:
    body = await create(fhir, patient())
    await fhir.get(f"/Patient/{body['id']}")
    await create(fhir, {"resourceType": "HealthcareService", "name": "Not routed"})
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "HealthcareService", "name": "x"},
                "request": {"method": "POST", "url": "HealthcareService"},
            },
        ],
    }
    assert (await fhir.post("", json=bundle)).status_code == 200
    assert counting.writes == 2
    assert counting.reads == 1
    assert storage.storage_for("HealthcareService") is storage.JSONB
