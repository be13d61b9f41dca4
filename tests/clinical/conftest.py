"""Shared fixtures for the clinical and consultations tests: tokens, a patient."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hims.core.db import Database
from hims.settings import Settings
from tests.clinical.factories import make_patient
from tests.identity.factories import role_headers


def auth_headers(settings: Settings, role: str = "physician") -> dict[str, str]:
    """The ONE place a token for a role is made: a real, active user holding ``role``."""
    return role_headers(settings, role)


@pytest.fixture
def physician(settings: Settings) -> dict[str, str]:
    """Headers of a physician."""
    return auth_headers(settings, "physician")


@pytest.fixture
async def patient_id(db: Database, partitions: str) -> uuid.UUID:
    """A patient, committed."""
    async with db.driver_transaction() as conn:
        patient = await make_patient(conn)
    return patient["id"]


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection for assertions."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()
