"""The per-type storage seam: every read and write of a resource goes through `storage_for(type)`.

* `JsonbStorage`, the versioned JSONB store (``fhir_resources``, history and index tables), holds
  every type that is not a domain record.
* `DomainStorage` holds a mapped type (`hims.fhir.domain`): reads come from the FHIR store, which
  holds the rendering of each domain row (written in the row's own statement), and writes become
  calls of the domain's service through the type's `Adapter`. A version that is not a domain
  record (`Adapter.screen`, a client-chosen id) stays in the JSONB store.
* AuditEvent is `PhiLogStorage`, a read-only view of ``phi_access_log``.

The composition root installs the domain storages (`install`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import asyncpg

from hims.core.errors import HimsError
from hims.core.records import Row
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir.audit_storage import PhiLogStorage
from hims.fhir.domain import RENDERED, Adapter, Item, as_uuid, naming, refused
from hims.fhir.extract import extract
from hims.fhir.versions import complete, prepare

T = TypeVar("T")


class Storage(Protocol):
    """Where the versions of one resource type live."""

    #: Write order within a batch (targets of references first).
    rank: int

    async def read(
        self,
        conn: asyncpg.Connection,
        resource_type: str,
        id_: str,
        *,
        lock: bool = False,
        to_write: bool = False,
    ) -> repo.Current | None:
        """The current version (or tombstone). ``to_write``: the caller writes the version after
        it (`repo.Write.prior`), so a storage may read along what that write will need."""

    async def read_many(
        self, conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
    ) -> dict[tuple[str, str], repo.Current]:
        """Current versions of many resources of this storage."""

    async def vread(
        self, conn: asyncpg.Connection, resource_type: str, id_: str, version_id: int
    ) -> tuple[bool, str | None] | None:
        """One historical version."""

    async def write(
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, actor: Actor
    ) -> set[tuple[str, str]]:
        """Write versions, each with its PHI access log row; returns the keys written (a key
        missing lost an optimistic-concurrency race). A written `repo.Write` holds the version as
        stored (id, version, text) afterwards."""


class JsonbStorage:
    """The versioned JSONB resource store (`fhir_resources`, history and index tables)."""

    rank = 0

    async def read(
        self,
        conn: asyncpg.Connection,
        resource_type: str,
        id_: str,
        *,
        lock: bool = False,
        to_write: bool = False,
    ) -> repo.Current | None:
        """The current version (or tombstone)."""
        return await repo.read(conn, resource_type, id_, lock=lock)

    async def read_logged(
        self, conn: asyncpg.Connection, resource_type: str, id_: str, actor: Actor
    ) -> repo.Current | None:
        """`read`, with ``actor``'s PHI access log row written by the same statement (no
        transaction needed: `hims.fhir.service.read_one`)."""
        return await repo.read_logged(conn, resource_type, id_, actor)

    async def read_many(
        self, conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
    ) -> dict[tuple[str, str], repo.Current]:
        """Current versions of many resources in one round trip."""
        return await repo.read_many(conn, keys, lock=lock)

    async def vread(
        self, conn: asyncpg.Connection, resource_type: str, id_: str, version_id: int
    ) -> tuple[bool, str | None] | None:
        """One historical version."""
        return await repo.vread(conn, resource_type, id_, version_id)

    async def write(
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, actor: Actor
    ) -> set[tuple[str, str]]:
        """Resource, history, index and log rows in one statement."""
        return await repo.write(conn, [complete(w) for w in writes], log=actor)


class DomainStorage(JsonbStorage):
    """A mapped type: its records are written by their domain service, through ``adapter``."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.rank = adapter.rank

    async def read(
        self,
        conn: asyncpg.Connection,
        resource_type: str,
        id_: str,
        *,
        lock: bool = False,
        to_write: bool = False,
    ) -> repo.Current | None:
        """The current version; ``to_write``, with its domain row read in the same statement (the
        write that follows need not look it up: `repo.Write.prior`)."""
        key = as_uuid(id_) if to_write else None
        if key is None:  # a plain read, or no domain row can have this id
            return await repo.read(conn, resource_type, id_, lock=lock)
        if lock:
            # Locks in the order every domain write takes them: the domain row, then its rendering.
            rows = await self.adapter.load(conn, [key], lock=True)
            current = await repo.read(conn, resource_type, id_, lock=True)
            if current is not None:
                current.row, current.row_read = rows.get(key), True
            return current
        return await repo.read(conn, resource_type, id_, row=(self.adapter.row_sql(3), key))

    async def write(
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, actor: Actor
    ) -> set[tuple[str, str]]:
        """Each version becomes a create, update or delete of its domain record (rules, row, PHI
        log and rendering in the domain's statements); versions that are no domain record go to
        the JSONB store."""
        adapter = self.adapter
        keyed = [(w, as_uuid(w.id)) for w in writes]
        # A POST's id is new, made by the server: no row can have it yet.
        wanted = [
            k
            for w, k in keyed
            if k is not None and w.method != "POST" and not (w.prior is not None and w.prior.row_read)
        ]
        loaded = await adapter.load(conn, wanted, lock=False) if wanted else {}
        store: list[repo.Write] = []
        creates: list[tuple[repo.Write, Item]] = []
        updates: list[tuple[repo.Write, Row, Item]] = []
        deletes: list[tuple[repo.Write, Row]] = []
        for w, key in keyed:
            prior: Row | None = None
            if key is not None:
                if w.prior is not None and w.prior.row_read:
                    prior = dict(w.prior.row) if w.prior.row is not None else None
                else:
                    prior = loaded.get(key)
            if w.resource is None:
                if prior is not None:
                    deletes.append((w, prior))
                else:
                    store.append(w)
                continue
            resource = w.document
            assert resource is not None
            reason = "its id is not a record id of ours" if key is None else adapter.screen(resource)
            if reason is None and prior is None and not adapter.creates:
                reason = f"a {adapter.table} record is not created through FHIR"
            if reason is not None:
                if prior is not None:
                    raise naming(refused(w.resource_type, w.id, reason), w.resource_type, w.id)
                store.append(w)
                continue
            assert key is not None
            try:
                values = adapter.values(resource)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A FHIR value the index cannot read (a date that is none) is named as such; the
                # version's own index is otherwise its rendering's, which checks the rest.
                extract(resource)
                raise naming(
                    refused(w.resource_type, w.id, f"unreadable ({exc})"), w.resource_type, w.id
                ) from None
            if adapter.patient_column is not None and values.get(adapter.patient_column) is None:
                if prior is not None:
                    raise naming(
                        refused(w.resource_type, w.id, "its patient is not a registered patient"),
                        w.resource_type,
                        w.id,
                    )
                store.append(w)
                continue
            extra = adapter.extra(resource)  # noqa: S610 (a FHIR adapter, not Django)
            item = Item(key, resource, values, extra, version=w.version_id, options=w.options)
            if prior is None:
                creates.append((w, item))
            else:
                updates.append((w, prior, item))
        written: set[tuple[str, str]] = set()
        if store:
            written |= await repo.write(conn, [complete(w) for w in store], log=actor)
        await adapter.prepare(conn, [item for _, item in creates] + [item for _, _, item in updates])
        token = RENDERED.set({})
        try:
            if creates:
                rows = await adapter.create(conn, actor, [item for _, item in creates])
                for (w, _), row in zip(creates, rows, strict=True):
                    written.add(self._stored(w, row))
            if updates:
                results = await adapter.update(conn, actor, [(prior, item) for _, prior, item in updates])
                for (w, _, _), found in zip(updates, results, strict=True):
                    if found is not None:
                        written.add(self._stored(w, found))
            if deletes:
                results = await adapter.delete(conn, actor, [prior for _, prior in deletes])
                for (w, _), found in zip(deletes, results, strict=True):
                    if found is not None:
                        written.add(self._stored(w, found, deleted=True))
        except HimsError as error:
            if len(writes) == 1:
                raise naming(error, writes[0].resource_type, writes[0].id) from None
            raise
        finally:
            RENDERED.reset(token)
        return written

    def _stored(self, w: repo.Write, row: Row, *, deleted: bool = False) -> tuple[str, str]:
        """Point ``w`` at the version as the domain wrote it; returns its key."""
        w.version_id, w.last_updated = int(row["version"]), row["updated_at"]
        w.pending = False
        if deleted or self.adapter.is_deleted(row):
            w.resource = None
            return (w.resource_type, w.id)
        # The version the domain's statement wrote into the FHIR store, rendered for it (FhirView);
        # rendered here only if that statement was not this one's.
        version = (RENDERED.get() or {}).get((w.resource_type, w.id, w.version_id)) or prepare(
            self.adapter.render(row),
            resource_type=w.resource_type,
            id_=w.id,
            version_id=w.version_id,
            now=w.last_updated,
            method=w.method,
        )
        w.resource, w.patient_ref, w.document = version.resource, version.patient_ref, version.document
        w.index = version.index
        return (w.resource_type, w.id)


JSONB = JsonbStorage()

#: The read-only AuditEvent view of the PHI access log (also searched by `searchset.search`).
PHI_LOG = PhiLogStorage()

#: Storage per resource type; anything absent uses the JSONB store. Filled by `install`.
STORAGE: dict[str, Storage] = {"AuditEvent": PHI_LOG}


def install(adapters: Sequence[Adapter]) -> Mapping[str, DomainStorage]:
    """Make each adapter's type a domain record type (the composition root calls this once)."""
    installed = {a.resource_type: DomainStorage(a) for a in adapters}
    STORAGE.clear()
    STORAGE.update({"AuditEvent": PHI_LOG, **installed})
    return installed


def storage_for(resource_type: str) -> Storage:
    """The storage of ``resource_type`` (the JSONB store unless it is a domain record type)."""
    return STORAGE.get(resource_type, JSONB)


def adapter_for(resource_type: str) -> Adapter | None:
    """The adapter of a domain record type, or None."""
    storage = STORAGE.get(resource_type)
    return storage.adapter if isinstance(storage, DomainStorage) else None


async def read_many(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
) -> dict[tuple[str, str], repo.Current]:
    """Current versions of keys of any types, one call per storage."""
    out: dict[tuple[str, str], repo.Current] = {}
    for storage, group in _group(keys, lambda k: k[0]).items():
        out.update(await storage.read_many(conn, group, lock=lock))
    return out


async def write(
    conn: asyncpg.Connection, writes: Sequence[repo.Write], *, actor: Actor
) -> set[tuple[str, str]]:
    """Write versions of any types, one call per storage, domain types in reference order (a
    domain checks what a record refers to)."""
    written: set[tuple[str, str]] = set()
    groups = _group(writes, lambda w: w.resource_type)
    for storage in sorted(groups, key=lambda s: s.rank):
        written |= await storage.write(conn, groups[storage], actor=actor)
    return written


def _group(items: Sequence[T], type_of: Callable[[T], str]) -> dict[Storage, list[T]]:
    groups: dict[Storage, list[T]] = {}
    for item in items:
        groups.setdefault(storage_for(type_of(item)), []).append(item)
    return groups
