"""A FHIR write, its history and its PHI access log row commit or roll back together."""

from __future__ import annotations

import pytest

from hims.core.db import Database
from hims.core.security import Actor
from hims.fhir import service
from tests.fhir.conftest import patient
from tests.support import count_rows, phi_rows


async def test_a_create_is_rolled_back_when_its_request_fails_later(db: Database, database_url: str):
    actor = Actor.system("fhir-test", channel="fhir")
    created: list[str] = []

    async def create_then_fail() -> None:
        async with db.driver_transaction() as conn:
            stored = await service.create(conn=conn, actor=actor, resource_type="Patient", resource=patient())
            created.append(stored.id)
            raise RuntimeError("the request failed after the write")

    with pytest.raises(RuntimeError):
        await create_then_fail()
    # Statements sent on a driver connection outside a transaction commit on their own
    # (autocommit): the write, history and log row must instead share the request's transaction.
    assert await count_rows(database_url, "patients") == 0
    assert await count_rows(database_url, "fhir_resources") == 0
    assert await count_rows(database_url, "fhir_resource_history") == 0
    assert await phi_rows(database_url, resource_type="Patient", resource_id=created[0]) == []


async def test_a_create_commits_with_its_access_log_row(db: Database, database_url: str):
    actor = Actor.system("fhir-test", channel="fhir")
    async with db.driver_transaction() as conn:
        stored = await service.create(conn=conn, actor=actor, resource_type="Patient", resource=patient())
    rows = await phi_rows(database_url, resource_type="Patient", resource_id=stored.id)
    assert [(r["action"], r["channel"], r["username"]) for r in rows] == [("create", "fhir", "fhir-test")]
    assert await count_rows(database_url, "patients") == 1
    assert await count_rows(database_url, "fhir_resources") == 1
