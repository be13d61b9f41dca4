"""Organization ↔ facilities, Location ↔ departments, Practitioner ↔ practitioners
(`hims.practitioners.service`) and Appointment ↔ appointments (`hims.scheduling.service`).

Every rule (codes, a department's facility, a practitioner's placement, an appointment's times,
patient, practitioner, transitions, double booking) is the domains'; these adapters only map. A
FHIR delete retires a facility, department or practitioner (the REST API keeps showing it,
inactive) and cancels an appointment; either way the row stays and its rendering is a tombstone.
A practitioner's placement is two columns of the row, rendered as a derived PractitionerRole with
the practitioner's id and version.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

import asyncpg

from hims.core.errors import HimsError
from hims.core.records import Row
from hims.core.security import Actor
from hims.fhir.domain import Adapter, Item, as_uuid, naming
from hims.fhir.mappings import appointment as appointment_mapping
from hims.fhir.mappings import location as location_mapping
from hims.fhir.mappings import organization as organization_mapping
from hims.fhir.mappings import practitioner as practitioner_mapping
from hims.fhir.mappings import practitioner_role
from hims.fhir.mappings._common import ref_id
from hims.practitioners import service as practitioners
from hims.scheduling import service as scheduling

#: A service's batch create: ``(*, conn, actor, news)`` -> the rows as written.
Register = Callable[..., Awaitable[list[Row]]]
#: A service's change of one record: ``(*, conn, actor, prior, changes, extra, keep_extra)`` -> the
#: row as written, or None when it lost its race.
Revise = Callable[..., Awaitable[Row | None]]
#: A service's retirement of one record: ``(*, conn, actor, prior)`` -> as `Revise`.
Retire = Callable[..., Awaitable[Row | None]]


class _Retired(Adapter):
    """A type whose rows are retired, never removed: deleted while ``deleted_at`` is set."""

    def is_deleted(self, row: Row) -> bool:
        """A retired (or FHIR-deleted) row reads as deleted."""
        return row.get("deleted_at") is not None

    def _naming(self, error: HimsError) -> HimsError:
        """The domain's error of a batch, naming the resource it is about."""
        row_id = error.extra.pop("id", None)
        return naming(error, self.resource_type, str(row_id)) if row_id else error


class _PracticeAdapter(_Retired):
    """Facilities, departments and practitioners: created in batches, changed and retired one by
    one through their service."""

    def __init__(self, mapping: ModuleType, register: Register, revise: Revise, retire: Retire) -> None:
        self.mapping, self._register, self._revise, self._retire = mapping, register, revise, retire

    def values(self, resource: dict[str, Any]) -> Row:
        """The row's columns (the mapping's ``to_row``)."""
        values: Row = self.mapping.to_row(resource)
        return values

    def extra(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """The whole resource beyond what the store owns (rendered back under the row)."""
        kept: dict[str, Any] = self.mapping.extra(resource)  # noqa: S610 (a FHIR mapping, not Django)
        return kept or None

    def render(self, row: Row) -> dict[str, Any]:
        """The resource of a row, over what the FHIR client sent."""
        resource: dict[str, Any] = self.mapping.to_resource(row, extra=row.get("extra"))
        return resource

    async def load(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool
    ) -> dict[uuid.UUID, Row]:
        """The rows, any state."""
        return await practitioners.load(conn, self.table, ids, lock=lock)

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Register them in one batch (one check statement per kind of check, one write)."""
        news = [practitioners.New(i.values, id=i.id, version=i.version, extra=i.extra) for i in items]
        try:
            return await self._register(conn=conn, actor=actor, news=news)
        except HimsError as error:
            raise self._naming(error) from None

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A FHIR update replaces the record's content (a retired one comes back)."""
        return [
            await self._revise(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Retire: inactive, kept for history, a tombstone in FHIR."""
        return [await self._retire(conn=conn, actor=actor, prior=prior) for prior in priors]


class OrganizationAdapter(_PracticeAdapter):
    """Every Organization with a record id is a facility (code assigned when it has none)."""

    resource_type = "Organization"
    table = "facilities"
    rank = 10

    def __init__(self) -> None:
        super().__init__(
            organization_mapping,
            practitioners.register_facilities,
            practitioners.revise_facility,
            practitioners.retire_facility,
        )


class LocationAdapter(_PracticeAdapter):
    """A Location is a department when it names its facility: ``managingOrganization`` is an
    ``Organization/<id>`` of ours."""

    resource_type = "Location"
    table = "departments"
    rank = 20

    def __init__(self) -> None:
        super().__init__(
            location_mapping,
            practitioners.register_departments,
            practitioners.revise_department,
            practitioners.retire_department,
        )

    def screen(self, resource: dict[str, Any]) -> str | None:
        """Locations of other organisations, or of none (a patient's home, a site named by
        identifier only), are not departments."""
        manager = resource.get("managingOrganization")
        reference = manager.get("reference") if isinstance(manager, dict) else None
        target = reference.removeprefix("Organization/") if isinstance(reference, str) else ""
        if isinstance(reference, str) and reference.startswith("Organization/") and as_uuid(target):
            return None
        return "it is not managed by one of our facilities (managingOrganization: Organization/<id>)"


class PractitionerAdapter(_PracticeAdapter):
    """Every Practitioner with a record id is a practitioner; its placement is the derived
    PractitionerRole."""

    resource_type = "Practitioner"
    table = "practitioners"
    rank = 30

    def __init__(self) -> None:
        super().__init__(
            practitioner_mapping,
            practitioners.register_practitioners,
            practitioners.revise_practitioner,
            practitioners.retire_practitioner,
        )

    def derived(self, row: Row) -> list[dict[str, Any]]:
        """Where the practitioner works, as what: one PractitionerRole with the practitioner's id."""
        return [practitioner_role.from_practitioner(row)]


def _books_ours(resource: dict[str, Any]) -> bool:
    """Whether the appointment's participants name one of our patients and practitioners."""
    actors = [p.get("actor") for p in resource.get("participant") or [] if isinstance(p, dict)]
    has = {kind: any(ref_id(a, kind) is not None for a in actors) for kind in ("Patient", "Practitioner")}
    return all(has.values())


class AppointmentAdapter(_Retired):
    """An Appointment booking one of our patients with one of our practitioners (by record id) is
    an appointment: the scheduling rules apply, a delete cancels it."""

    resource_type = "Appointment"
    table = "appointments"
    rank = 60
    patient_column = "patient_id"

    def screen(self, resource: dict[str, Any]) -> str | None:
        """Appointments of patients or practitioners that are no records of ours are not bookings."""
        if not _books_ours(resource):
            return "it does not book a patient and a practitioner of ours (Patient/<id>, Practitioner/<id>)"
        return None

    def values(self, resource: dict[str, Any]) -> Row:
        """The appointments row's columns."""
        return appointment_mapping.to_row(resource)

    def extra(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """Other participants, coded reasons and foreign elements."""
        return appointment_mapping.extra(resource) or None  # noqa: S610 (a FHIR mapping, not Django)

    def render(self, row: Row) -> dict[str, Any]:
        """The Appointment of a row, with what FHIR clients sent beyond it."""
        return appointment_mapping.to_resource(row, extra=row.get("extra"))

    async def load(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool
    ) -> dict[uuid.UUID, Row]:
        """The appointments' rows."""
        return await scheduling.load(conn, ids, lock=lock)

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Book them in one batch (one write statement)."""
        news = [scheduling.New(i.values, id=i.id, version=i.version, extra=i.extra) for i in items]
        try:
            return await scheduling.book(conn=conn, actor=actor, news=news)
        except HimsError as error:
            raise self._naming(error) from None

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """A FHIR update replaces the appointment's content, by the transitions REST has."""
        return [
            await scheduling.revise(
                conn=conn, actor=actor, prior=prior, changes=item.values, extra=item.extra, keep_extra=False
            )
            for prior, item in changes
        ]

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Cancel (the slot is released) and mark deleted."""
        return [await scheduling.remove(conn=conn, actor=actor, prior=prior) for prior in priors]
