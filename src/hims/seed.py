"""`hims db seed`: reference data, and demo data that never touches a real record.

The composition root lists the steps (`hims.composition.SEEDERS`), each marked reference or demo.
Demo steps run in development and test only, and write only to what the demo steps themselves
made: later steps get the demo patients and practitioners from the report, never by a query that
could find a real record. Every step is idempotent: a second run adds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import Database
from hims.settings import Settings

#: Environments where demo data may be loaded.
DEMO_ENVIRONMENTS = ("development", "test")


@dataclass
class SeedReport:
    """What the steps created (counts), the demo logins to print, and the demo records later
    steps may build on."""

    created: dict[str, int] = field(default_factory=dict)
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (role, username, password)
    #: The demo patients (made by the patients step now or before): the only patients later steps
    #: may give a demo history.
    demo_patients: list[uuid.UUID] = field(default_factory=list)
    #: The demo practitioners by seed key, with their rows (made by the practitioners step).
    demo_practitioners: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Lines to print that are not counts (e.g. the code lists shipped with the package).
    notes: list[str] = field(default_factory=list)
    #: The reference data file to load (None: the one shipped with the package).
    reference_file: Path | None = None


Seeder = Callable[[AsyncSession, Settings, SeedReport], Awaitable[None]]


@dataclass(frozen=True)
class SeedStep:
    """One step of `hims db seed`: reference data (run everywhere) or demo data (dev/test only)."""

    name: str
    run: Seeder
    demo: bool


class DemoRefused(Exception):
    """Demo data was asked for in an environment that holds real records."""


async def seed(
    database: Database,
    settings: Settings,
    steps: Sequence[SeedStep],
    *,
    reference_only: bool,
    reference_file: Path | None = None,
) -> SeedReport:
    """Run the steps in order, each in its own transaction (demo steps unless ``reference_only``)."""
    if not reference_only and settings.hims_env not in DEMO_ENVIRONMENTS:
        raise DemoRefused(
            f"demo data is refused in {settings.hims_env}; `hims db seed --reference-data-only` loads "
            "the reference data (facilities and code lists)"
        )
    report = SeedReport(reference_file=reference_file)
    for step in steps:
        if step.demo and reference_only:
            continue
        async with database.transaction() as session:
            await step.run(session, settings, report)
    return report
