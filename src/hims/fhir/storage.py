"""The per-type storage seam: every read and write of a resource goes through `storage_for(type)`.

In this release every type but AuditEvent uses `JsonbStorage` (the versioned JSONB store);
AuditEvent is `PhiLogStorage`, a read-only view of ``phi_access_log`` that also provides its own
search (`searchset.search` hands AuditEvent searches to it). When a domain service
(patients, practitioners, facilities...) is ready to own a type, implement `Storage` for it with
the pure mappings in ``hims.fhir.mappings`` (``to_row`` / ``to_resource``) and register it in
`STORAGE`; the FHIR API and the REST API then see the same rows. Search and history keep using
the JSONB store's index until the domain storage provides its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import asyncpg

from hims.core.security import Actor
from hims.fhir import projectors
from hims.fhir import repository as repo
from hims.fhir.audit_storage import PhiLogStorage
from hims.fhir.projection import PROJECTORS, DomainStatement, as_uuid, domain_conflict, project_writes

T = TypeVar("T")


class Storage(Protocol):
    """Where the versions of one resource type live."""

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
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, log: repo.AccessLog | None = None
    ) -> set[tuple[str, str]]:
        """Write versions; returns the keys written (missing: lost an optimistic-concurrency race).
        ``log``: the PHI access log row of each version written, in the same transaction."""


class JsonbStorage:
    """The versioned JSONB resource store (`fhir_resources`, history and index tables)."""

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
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, log: repo.AccessLog | None = None
    ) -> set[tuple[str, str]]:
        """Resource, history, index (and log) rows in one statement."""
        return await repo.write(conn, writes, log=log)


class ProjectedStorage(JsonbStorage):
    """The JSONB store, plus the domain row of every version (`hims.fhir.projection`)."""

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
        write that follows this version then need not look the row up: `repo.Write.prior`)."""
        key = as_uuid(id_) if to_write else None
        if key is None:  # a plain read, or no domain row can have this id
            return await repo.read(conn, resource_type, id_, lock=lock)
        row = (PROJECTORS[resource_type].row_sql(3), key)
        return await repo.read(conn, resource_type, id_, lock=lock, row=row)

    async def write(
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, log: repo.AccessLog | None = None
    ) -> set[tuple[str, str]]:
        """Domain rows (types in reference order), then the FHIR versions in one statement.

        Each type's rows are written before the next type is projected, whose checks look them up;
        the last type's rows are written by the FHIR write statement itself (one round trip less).
        """
        by_type: dict[str, list[repo.Write]] = {}
        for w in writes:
            by_type.setdefault(w.resource_type, []).append(w)
        last: list[DomainStatement] = []
        for resource_type in sorted(by_type, key=lambda t: PROJECTORS[t].rank):
            for statement in last:
                await statement.run(conn)
            last = await project_writes(conn, PROJECTORS[resource_type], by_type[resource_type])
        try:
            return await repo.write(conn, writes, log=log, ctes=[s.as_cte() for s in last])
        except asyncpg.IntegrityConstraintViolationError as exc:
            if not last:
                raise
            raise domain_conflict(last[0].projector, exc) from None


JSONB = JsonbStorage()

#: The read-only AuditEvent view of the PHI access log (also searched by `searchset.search`).
PHI_LOG = PhiLogStorage()

#: The JSONB store plus a domain row per version (`hims.fhir.projection`).
PROJECTED = ProjectedStorage()

#: Storage per resource type; anything absent uses the JSONB store.
STORAGE: dict[str, Storage] = {"AuditEvent": PHI_LOG, **dict.fromkeys(PROJECTORS, PROJECTED)}
assert projectors.__all__  # every projector module is imported before STORAGE is built


def storage_for(resource_type: str) -> Storage:
    """The storage of ``resource_type`` (the JSONB store until a domain storage is registered)."""
    return STORAGE.get(resource_type, JSONB)


async def read_many(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
) -> dict[tuple[str, str], repo.Current]:
    """Current versions of keys of any types, one call per storage."""
    out: dict[tuple[str, str], repo.Current] = {}
    for storage, group in _group(keys, lambda k: k[0]).items():
        out.update(await storage.read_many(conn, group, lock=lock))
    return out


async def write(conn: asyncpg.Connection, writes: Sequence[repo.Write]) -> set[tuple[str, str]]:
    """Write versions of any types, one call per storage."""
    written: set[tuple[str, str]] = set()
    for storage, group in _group(writes, lambda w: w.resource_type).items():
        written |= await storage.write(conn, group)
    return written


def _group(items: Sequence[T], type_of: Callable[[T], str]) -> dict[Storage, list[T]]:
    groups: dict[Storage, list[T]] = {}
    for item in items:
        groups.setdefault(storage_for(type_of(item)), []).append(item)
    return groups
