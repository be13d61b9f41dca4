"""FHIR resources of the mapped types are domain records: the FHIR layer maps, the domain writes.

For each mapped type an `Adapter` turns a FHIR version into a call of its domain's service
(register, revise, remove...) and a domain row back into a FHIR resource. The domain service
applies every rule and writes the row, its PHI log rows and its FHIR rendering in one statement:
the rendering comes from `FhirView`, which the composition root installs as the table's
`hims.core.records.RecordView`, so a row written through REST is rendered exactly like one
written through FHIR. Nothing here writes a domain table.

What a resource carries beyond the row's columns is kept on the row (``extra``) and comes back in
the rendering. A resource of a mapped type that is not a domain record — a client-chosen id such
as ``example`` (domain ids are UUIDs), or a kind the domain does not model (`Adapter.screen`: an
Observation that is not a vital sign, an Encounter that is not ambulatory) — is kept in the FHIR
store only, as any unmapped type.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from hims.core.errors import HimsError, ValidationFailed, field_error
from hims.core.records import Part, Row
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir.extract import compartment_patient
from hims.fhir.versions import prepare


def as_uuid(id_: str) -> uuid.UUID | None:
    """The id as a UUID when it is one in canonical form, or None: client-chosen ids like
    ``example`` have no domain row, and neither do other spellings of a UUID (FHIR ids are
    case-sensitive, so ``5B0A…`` and ``5b0a…`` are two resources, while the domain row of either
    would be the one row ``5b0a…``)."""
    try:
        key = uuid.UUID(id_)
    except ValueError:
        return None
    return key if str(key) == id_ else None


@dataclass
class Item:
    """One FHIR version on its way to the domain."""

    id: uuid.UUID
    resource: dict[str, Any]
    values: Row
    extra: dict[str, Any] | None
    #: The version the record gets when it is created (a FHIR-only resource becoming a record
    #: keeps counting its versions).
    version: int = 1
    #: Request options the domain honours (e.g. ``allow_duplicate``).
    options: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """How one FHIR type maps onto its domain service. Subclasses fill in the mapping and calls."""

    resource_type: str = ""
    #: The domain table holding the records (the key of the view installed for it).
    table: str = ""
    #: Write order within a batch: targets of references first (a domain checks them).
    rank: int = 100
    #: Whether a FHIR create makes a record (False: new resources stay in the FHIR store and only
    #: the domain's own way creates records, e.g. a document's upload).
    creates: bool = True
    #: The column naming the record's patient (None: the record is no patient's, or is the
    #: patient). A resource whose patient is not a record of ours (a reference to a client-chosen
    #: id such as ``Patient/example``, or none) stays in the FHIR store with that patient's data.
    patient_column: str | None = None

    def screen(self, resource: dict[str, Any]) -> str | None:
        """Why this resource is not a domain record (kept in the FHIR store only), or None."""
        return None

    def values(self, resource: dict[str, Any]) -> Row:
        """The row's column values (the mapping's ``to_row``); ValueError/TypeError/KeyError when
        the resource cannot be read."""
        raise NotImplementedError

    def extra(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """What the resource carries beyond ``values`` (kept on the row)."""
        return None

    def render(self, row: Row) -> dict[str, Any]:
        """The FHIR resource of a row (without meta)."""
        raise NotImplementedError

    def is_deleted(self, row: Row) -> bool:
        """Whether the row reads as deleted in FHIR (its rendering is a tombstone)."""
        return False

    def compartment(self, row: Row) -> str | None:
        """The id of the patient whose compartment the row's resource is in (its tombstone keeps
        it): the patient column's, else read from the rendering."""
        if self.patient_column is not None:
            value = row.get(self.patient_column)
            return str(value) if value is not None else None
        return compartment_patient(self.render(row))

    def derived(self, row: Row) -> list[dict[str, Any]]:
        """Resources of other types built from the row, with the row's id and version."""
        return []

    def row_sql(self, number: int) -> str:
        """A scalar subquery: the composite domain row whose id is parameter ``$number``."""
        return f"(SELECT t FROM {self.table} t WHERE id = ${number}::uuid)"  # noqa: S608 (our table name)

    async def prepare(self, conn: asyncpg.Connection, items: Sequence[Item]) -> None:
        """Adjust the items' values with what the mapping alone cannot know (a lookup), before the
        domain is called; by default nothing."""

    async def load(
        self, conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool
    ) -> dict[uuid.UUID, Row]:
        """Current rows by id."""
        raise NotImplementedError

    async def create(self, conn: asyncpg.Connection, actor: Actor, items: Sequence[Item]) -> list[Row]:
        """Create records (all or none: a rule refusing one raises)."""
        raise NotImplementedError

    async def update(
        self, conn: asyncpg.Connection, actor: Actor, changes: Sequence[tuple[Row, Item]]
    ) -> list[Row | None]:
        """New versions of records, one result per change (None: another write changed that
        record since its prior row was read; nothing written for it)."""
        raise NotImplementedError

    async def delete(self, conn: asyncpg.Connection, actor: Actor, priors: Sequence[Row]) -> list[Row | None]:
        """Delete records as the domain deletes them (None as for `update`)."""
        raise NotImplementedError


def refused(resource_type: str, id_: str, reason: str) -> ValidationFailed:
    """422 for a version that would turn a domain record into something the domain cannot hold."""
    return ValidationFailed(
        f"{resource_type}/{id_} cannot be saved: {reason}.",
        code="domain_constraint",
        errors=[field_error(resource_type, reason, "domain_constraint")],
    )


def naming(error: HimsError, resource_type: str, id_: str) -> HimsError:
    """``error`` noting which resource it is about (bundles report the entry)."""
    error.extra.setdefault("resource", f"{resource_type}/{id_}")
    return error


# ------------------------------------------------------------------------------ the FHIR view


def rendered(adapter: Adapter, row: Row, *, deleting: bool) -> list[repo.Write]:
    """The FHIR versions of a domain row as it is after a write: its resource (a tombstone when
    deleted) and the resources derived from it, all at the row's version."""
    version = int(row["version"])
    now: datetime = row.get("updated_at") or row["created_at"]
    method = "POST" if version == 1 else "PUT"
    key = str(row["id"])
    writes: list[repo.Write] = []
    derived = adapter.derived(row)
    if deleting or adapter.is_deleted(row):
        patient = adapter.compartment(row)
        patient_ref = f"Patient/{patient}" if patient else None
        writes.append(repo.Write(adapter.resource_type, key, version, now, "DELETE", None, patient_ref, None))
        writes.extend(
            repo.Write(d["resourceType"], d["id"], version, now, "DELETE", None, None, None) for d in derived
        )
        return writes
    writes.append(
        prepare(
            adapter.render(row),
            resource_type=adapter.resource_type,
            id_=key,
            version_id=version,
            now=now,
            method=method,
        )
    )
    writes.extend(
        prepare(d, resource_type=d["resourceType"], id_=d["id"], version_id=version, now=now, method=method)
        for d in derived
    )
    return writes


class FhirView:
    """A domain table's FHIR rendering, written in the statement that writes its rows
    (`hims.core.records.RecordView`): versions, history and search index of each row written."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    def parts(self, rows: Sequence[Row], *, deleting: bool) -> list[Part]:
        """The FHIR store's CTEs for ``rows``, gated on the rows the domain write wrote (``w``)."""
        writes = [w for row in rows for w in rendered(self.adapter, row, deleting=deleting)]
        stash = RENDERED.get()
        if stash is not None:
            stash.update(((w.resource_type, w.id, w.version_id), w) for w in writes)
        return repo.write_parts(writes, prefix="fhir_", gate="SELECT id::text FROM w")


#: The versions `FhirView` rendered during a FHIR write (`hims.fhir.storage.DomainStorage`), by
#: (type, id, version): the FHIR API answers with the very version its statement stored, without
#: rendering the row a second time. None outside such a write.
RENDERED: ContextVar[dict[tuple[str, str, int], repo.Write] | None] = ContextVar(
    "hims_fhir_rendered", default=None
)
