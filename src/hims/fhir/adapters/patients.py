"""Patient ↔ the patients domain (`hims.patients.service`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from hims.core.records import Row
from hims.core.security import Actor
from hims.fhir.domain import Adapter, Item
from hims.fhir.mappings import patient as mapping
from hims.patients import service


class PatientAdapter(Adapter):
    """Every Patient with a server-style (UUID) id is a registered patient: registration rules,
    duplicate detection and the MRN are the patients domain's."""

    resource_type = "Patient"
    table = "patients"
    rank = 50

    def values(self, resource: dict[str, Any]) -> Row:
        """The patients row's columns."""
        return mapping.to_row(resource)

    def extra(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """Other names, addresses, contacts and foreign elements."""
        return mapping.extra(resource) or None  # noqa: S610 (a FHIR mapping, not Django)

    def render(self, row: Row) -> dict[str, Any]:
        """The Patient of a row, with what FHIR clients sent beyond it."""
        return mapping.to_resource(row, extra=row.get("extra"))

    def compartment(self, row: Row) -> str | None:
        """A Patient is in its own compartment."""
        return str(row["id"])

    def is_deleted(self, row: Row) -> bool:
        """A soft-deleted patient reads as deleted."""
        return row.get("deleted_at") is not None

    async def load(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool
    ) -> dict[uuid.UUID, Row]:
        """The patients' rows."""
        return await service.load(conn, ids, lock=lock)

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Register each patient (duplicate detection unless ``allow_duplicate``)."""
        return [
            await service.register(
                conn=conn,
                actor=actor,
                values=item.values,
                allow_duplicate=bool(item.options.get("allow_duplicate")),
                id_=item.id,
                version=item.version,
                extra=item.extra,
            )
            for item in items
        ]

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A FHIR update replaces the whole record (a deleted one comes back)."""
        return [
            await service.revise(
                conn=conn,
                actor=actor,
                prior=prior,
                changes=item.values,
                extra=item.extra,
                keep_extra=False,
                restore=True,
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Soft delete."""
        return [await service.remove(conn=conn, actor=actor, prior=prior) for prior in priors]
