"""`hims db seed`: idempotent demo data, contributed by each domain in dependency order."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from hims.settings import Settings


@dataclass
class SeedReport:
    """What the seeders created (counts) and the demo logins to print."""

    created: dict[str, int] = field(default_factory=dict)
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # (role, username, password)
    #: The demo patients (made by the patients seeder now or before): the only patients later
    #: seeders may give a demo history.
    demo_patients: list[uuid.UUID] = field(default_factory=list)


Seeder = Callable[[AsyncSession, Settings, SeedReport], Awaitable[None]]

#: Seeders in dependency order; each domain appends its own at import of `hims.seeders`.
SEEDERS: list[tuple[str, Seeder]] = []
