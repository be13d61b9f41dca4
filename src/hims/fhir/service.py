"""The FHIR interactions on the store: the rules (ids, versions, preconditions, references, audit).

No HTTP and no commit here: the route or CLI owns the transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import asyncpg
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit.service import Outcome, record
from hims.core.db import Database
from hims.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
    field_error,
)
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir.audit_storage import read_only_error
from hims.fhir.extract import compartment_patient, split_reference
from hims.fhir.patch import apply
from hims.fhir.registry import RESOURCE_TYPES, type_def
from hims.fhir.search import find_ids
from hims.fhir.storage import JsonbStorage, storage_for
from hims.fhir.versions import draft

log = structlog.get_logger("hims.fhir")
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass
class Stored:
    """A resource as stored: JSON text plus its version facts."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    text: str
    patient_ref: str | None = None
    created: bool = False

    @property
    def etag(self) -> str:
        """The weak ETag of this version."""
        return f'W/"{self.version_id}"'


def check_type(resource_type: str) -> None:
    """404 for a type we do not know."""
    if resource_type not in RESOURCE_TYPES:
        raise NotFound(f"Unknown resource type {resource_type!r}.", code="unknown_resource_type")


def check_interaction(resource_type: str, interaction: str) -> None:
    """405 when ``resource_type`` does not support ``interaction`` (e.g. writes of AuditEvent)."""
    definition = type_def(resource_type)
    if interaction in definition.interactions:
        return
    if definition.source is not None and interaction in ("create", "update", "patch", "delete"):
        raise read_only_error(resource_type)
    raise MethodNotAllowed(
        f"{resource_type} supports only {', '.join(definition.interactions)}; not {interaction}.",
        code="interaction_not_supported",
    )


def check_read_access(actor: Actor, resource_type: str) -> None:
    """403 unless ``actor`` holds the type's read permission (AuditEvent: audit:read).

    Routes already require a permission; this is the per-type check every read path (routes,
    bundle GET entries) goes through, from `hims.fhir.registry` (docs/fhir.md, "Security").
    """
    permission = type_def(resource_type).read_permission
    if not actor.can(permission):
        raise Forbidden(
            f"Reading {resource_type} needs the {permission} permission.", code="permission_denied"
        )


def check_writable(resource_type: str, interaction: str) -> None:
    """`check_type` and `check_interaction` for a write."""
    check_type(resource_type)
    check_interaction(resource_type, interaction)


def check_id(id_: str) -> None:
    """400 for an id that is not a FHIR id."""
    if not ID_RE.match(id_):
        raise BadRequest(f"Invalid resource id {id_!r} (1-64 of A-Z a-z 0-9 - .).", code="invalid_id")


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a precise 400."""
    if not body:
        raise BadRequest("The request body is empty; send a FHIR JSON resource.", code="empty_body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object (a FHIR resource).", code="invalid_json")
    return data


def validate_resource(resource: dict[str, Any], *, expected_type: str | None) -> list[dict[str, Any]]:
    """Check resourceType and references; returns the objects in ``resource`` that hold its
    references (`reference_holders`), for the caller to read or rewrite without another walk."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise ValidationFailed(
            "The resource has no resourceType.",
            code="missing_resource_type",
            errors=[field_error("resourceType", "required", "required")],
        )
    if rtype not in RESOURCE_TYPES:
        raise ValidationFailed(
            f"Unknown resourceType {rtype!r}.",
            code="unknown_resource_type",
            errors=[field_error("resourceType", "not an R4 resource type")],
        )
    if expected_type is not None and rtype != expected_type:
        raise BadRequest(
            f"resourceType {rtype!r} does not match the URL type {expected_type!r}.",
            code="resource_type_mismatch",
        )
    holders = reference_holders(resource)
    for holder in holders:
        ref = holder["reference"]
        if not _valid_reference(ref):
            # Only a rejected resource pays for the walk that names the element.
            where = next(path for path, found in iter_references(resource) if found == ref)
            raise ValidationFailed(
                f"Invalid reference {ref!r} at {rtype}.{where}.",
                code="invalid_reference",
                errors=[
                    field_error(
                        where,
                        "expected Type/id, an absolute URL, #contained or urn:uuid:",
                        "invalid_reference",
                    )
                ],
            )
    return holders


def _valid_reference(ref: str) -> bool:
    if ref.startswith(("#", "urn:uuid:", "urn:oid:", "http://", "https://")):
        return True
    if "?" in ref:  # conditional reference, only meaningful inside a transaction
        return ref.split("?", 1)[0] in RESOURCE_TYPES
    parts = ref.split("/")
    if len(parts) == 2:
        return parts[0] in RESOURCE_TYPES and bool(ID_RE.match(parts[1]))
    if len(parts) == 4 and parts[2] == "_history":
        return parts[0] in RESOURCE_TYPES and bool(ID_RE.match(parts[1]))
    return False


def iter_references(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, reference) for every Reference.reference in ``node``, in document order."""
    out: list[tuple[str, str]] = []
    _collect_references(node, path, out)
    return out


_CONTAINERS = (dict, list)  # a tuple: `dict | list` builds a union on every isinstance call


def _collect_references(node: Any, path: str, out: list[tuple[str, str]]) -> None:
    # A plain recursive walk: a generator chain cost a resume per level per reference, a tenth
    # of a Synthea import's time.
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                out.append((path or key, value))
            elif isinstance(value, _CONTAINERS):
                _collect_references(value, f"{path}.{key}" if path else key, out)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, _CONTAINERS):
                _collect_references(item, path, out)


def reference_holders(node: Any, out: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every object in ``node`` (parsed JSON: plain dicts and lists) with a ``reference`` string,
    in document order, as `iter_references` finds them but without building their paths: the one
    walk that both reads and rewrites a resource's references."""
    found: list[dict[str, Any]] = [] if out is None else out
    if type(node) is dict:
        for key, value in node.items():
            kind = type(value)
            if kind is dict or kind is list:
                reference_holders(value, found)
            elif key == "reference" and kind is str:
                found.append(node)
    elif type(node) is list:
        for item in node:
            kind = type(item)
            if kind is dict or kind is list:
                reference_holders(item, found)
    return found


def local_targets(holders: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Relative references (Type/id) to resources on this server, of `reference_holders`."""
    return relative_targets(holder["reference"] for holder in holders)


def relative_targets(refs: Iterable[str]) -> set[tuple[str, str]]:
    """The (type, id) of the relative references among ``refs`` (not #, urn:, URLs or searches)."""
    out = set()
    for ref in refs:
        if ref.startswith(("#", "urn:", "http://", "https://")) or "?" in ref:
            continue
        target = split_reference(ref)
        if target:
            out.add(target)
    return out


async def check_targets_exist(conn: asyncpg.Connection, targets: set[tuple[str, str]]) -> None:
    """422 when a relative reference points at nothing (referential integrity, like HAPI's default)."""
    if not targets:
        return
    found = await repo.existing_keys(conn, sorted(targets))
    missing = sorted(targets - found)
    if missing:
        names = ", ".join(f"{t}/{i}" for t, i in missing[:5])
        raise ValidationFailed(
            f"Reference target(s) not found: {names}.",
            code="invalid_reference",
            errors=[
                field_error("reference", f"{t}/{i} does not exist", "reference_not_found")
                for t, i in missing[:20]
            ],
        )


#: Query parameters a create may carry (options for the domain), and their values.
CREATE_OPTIONS = {"allow_duplicate": ("true", "false")}


def create_options(query: str) -> dict[str, Any]:
    """The domain options in a create's query string (``allow_duplicate=true``), or 400."""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        allowed = CREATE_OPTIONS.get(name)
        if allowed is None or value not in allowed:
            known = ", ".join(f"{k}=true|false" for k in CREATE_OPTIONS)
            raise BadRequest(
                f"A create takes only {known}; not {name}={value}.",
                code="invalid_parameter",
            )
        options[name] = value == "true"
    return options


def new_id() -> str:
    """A server-assigned logical id."""
    return str(uuid.uuid4())


def audit_patient(patient_ref: str | None) -> uuid.UUID | None:
    """The PHI log's patient_id for a compartment reference: the Patient id when it is a UUID.

    Server-assigned ids are UUIDs, so this matches the domain patients table once Patient is
    routed there; client-chosen ids ("example") give None and the log's resource_id still names
    the resource (docs/fhir.md, "Audit").
    """
    if not patient_ref:
        return None
    try:
        return uuid.UUID(patient_ref.removeprefix("Patient/"))
    except ValueError:
        return None


async def audit(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    resource_type: str,
    items: Sequence[tuple[str | None, str | None]],
    *,
    outcome: Outcome = "success",
) -> None:
    """One PHI access row per (patient_ref, id) in ``items`` (dedup per patient for searches)."""
    await record(
        conn,
        actor=actor,
        action=action,
        resource_type=resource_type,
        accesses=[(audit_patient(p), r) for p, r in items],
        outcome=outcome,
    )


async def log_denied(
    database: Database,
    actor: Actor,
    *,
    action: str,
    resource_type: str,
    id_: str | None,
    patients: Sequence[str] = (),
) -> None:
    """Log a refused FHIR request on ``resource_type`` (outcome ``denied``), in its own
    transaction: the resource's patient when it names one (read from the store: the caller may
    not see it, compliance may), else each patient a search asked for (``patients``), else none."""
    items: list[tuple[str | None, str | None]]
    async with database.driver_transaction() as conn:
        if id_ is not None:
            current = await repo.read(conn, resource_type, id_)
            patient = f"Patient/{id_}" if resource_type == "Patient" else None
            items = [(current.patient_ref if current is not None else patient, id_)]
        else:
            items = [(p, None) for p in patients] or [(None, None)]
        await audit(conn, actor, action, resource_type, items, outcome="denied")


def parse_if_match(value: str | None) -> int | None:
    """The version in an If-Match header (W/"3", "3" or 3)."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    try:
        return int(text)
    except ValueError:
        raise BadRequest(
            f'Invalid If-Match header {value!r}; expected W/"<version>".', code="invalid_if_match"
        ) from None


# ---------------------------------------------------------------- interactions


async def read(*, session: AsyncSession, actor: Actor, resource_type: str, id_: str) -> Stored:
    """The current version; 404 if never existed, 410 if deleted."""
    check_type(resource_type)
    check_read_access(actor, resource_type)
    conn = await repo.connection(session)
    stored = _current(resource_type, id_, await storage_for(resource_type).read(conn, resource_type, id_))
    if type_def(resource_type).phi:
        await audit(conn, actor, "read", resource_type, [(stored.patient_ref, id_)])
    else:
        _unlogged_read(actor, resource_type, id_)
    return stored


async def read_one(*, database: Database, actor: Actor, resource_type: str, id_: str) -> Stored:
    """`read` as a request of its own: one statement that reads and writes the PHI log row, on a
    connection outside any transaction (no BEGIN/COMMIT round trips, no session)."""
    check_type(resource_type)
    storage = storage_for(resource_type)
    if not isinstance(storage, JsonbStorage):  # a read-only view (AuditEvent) reads its own way
        async with database.transaction() as session:
            return await read(session=session, actor=actor, resource_type=resource_type, id_=id_)
    check_read_access(actor, resource_type)
    phi = type_def(resource_type).phi
    async with database.statement_connection() as conn:
        if phi:
            current = await storage.read_logged(conn, resource_type, id_, actor)
        else:
            current = await storage.read(conn, resource_type, id_)
    stored = _current(resource_type, id_, current)
    if not phi:
        _unlogged_read(actor, resource_type, id_)
    return stored


def _current(resource_type: str, id_: str, current: repo.Current | None) -> Stored:
    """The current version as read: 404 if never existed, 410 if deleted."""
    if current is None:
        raise NotFound(f"{resource_type}/{id_} is not known.", code="resource_not_found")
    if current.deleted or current.resource is None:
        raise Gone(
            f"{resource_type}/{id_} was deleted.",
            code="resource_deleted",
            headers={"ETag": f'W/"{current.version_id}"'},
        )
    return Stored(
        resource_type, id_, current.version_id, current.last_updated, current.resource, current.patient_ref
    )


def _unlogged_read(actor: Actor, resource_type: str, id_: str) -> None:
    """Not PHI access (docs/fhir.md, AuditEvent): an operational trail, ids only."""
    log.info("fhir.read_unlogged_type", resource_type=resource_type, id=id_, user_id=str(actor.user_id))


async def vread(
    *, session: AsyncSession, actor: Actor, resource_type: str, id_: str, version_id: str
) -> Stored:
    """One version from history."""
    check_type(resource_type)
    check_read_access(actor, resource_type)
    check_interaction(resource_type, "vread")
    try:
        version = int(version_id)
    except ValueError:
        raise NotFound(
            f"Version {version_id!r} of {resource_type}/{id_} is not known.", code="version_not_found"
        ) from None
    conn = await repo.connection(session)
    found = await storage_for(resource_type).vread(conn, resource_type, id_, version)
    if found is None:
        raise NotFound(f"Version {version} of {resource_type}/{id_} is not known.", code="version_not_found")
    if found[1] is None:
        raise Gone(f"Version {version} of {resource_type}/{id_} is a delete.", code="resource_deleted")
    data = orjson.loads(found[1])
    patient = compartment_patient(data)
    patient_ref = f"Patient/{patient}" if patient else None
    await audit(conn, actor, "vread", resource_type, [(patient_ref, id_)])
    return Stored(
        resource_type,
        id_,
        version,
        datetime.fromisoformat(data["meta"]["lastUpdated"]),
        found[1],
        patient_ref,
    )


async def create(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    resource_type: str,
    resource: dict[str, Any],
    if_none_exist: str | None = None,
    options: dict[str, Any] | None = None,
) -> Stored:
    """POST: a new resource with a server id (or the match of If-None-Exist).

    Without If-None-Exist, everything before the write only reads, and the write (version,
    index, PHI log and domain rows) is one statement: ``conn`` need not be in a transaction.
    """
    check_writable(resource_type, "create")
    holders = validate_resource(resource, expected_type=resource_type)
    if if_none_exist:
        matches = await find_ids(conn, resource_type, if_none_exist, limit=2, lock=True)
        if len(matches) > 1:
            raise PreconditionFailed("If-None-Exist matched more than one resource.", code="multiple_matches")
        if matches:
            current = await storage_for(resource_type).read(conn, resource_type, matches[0])
            assert current is not None
            assert current.resource is not None
            await audit(
                conn,
                actor,
                "read",
                resource_type,
                [(current.patient_ref, matches[0])],
            )
            return Stored(
                resource_type,
                matches[0],
                current.version_id,
                current.last_updated,
                current.resource,
                current.patient_ref,
            )
    await check_targets_exist(conn, local_targets(holders))
    now = datetime.now(UTC)
    write = draft(resource, resource_type=resource_type, id_=new_id(), version_id=1, now=now, method="POST")
    write.options = options or {}
    await storage_for(resource_type).write(conn, [write], actor=actor)
    assert write.resource is not None
    return Stored(
        resource_type,
        write.id,
        write.version_id,
        write.last_updated,
        write.resource,
        write.patient_ref,
        created=True,
    )


#: After an optimistic write lost its race, how many more times it is tried under the row lock.
#: A lock on a row that does not exist yet locks nothing, so two PUTs creating the same id can
#: still race once; the second locked try finds the row and waits on it.
LOCKED_ATTEMPTS = 2

T = TypeVar("T")


async def _optimistic(
    conn: asyncpg.Connection,
    attempt: Callable[[bool], Awaitable[T | None]],
    resource_type: str,
    id_: str,
) -> T:
    """Run ``attempt(False)`` on ``conn`` as it is; when a concurrent write of the same resource beat
    it (it returned None, having written nothing), run ``attempt(True)`` in a transaction that
    reads with the row lock, which queues it behind the other writers.

    Each attempt reads the current version and writes the next one in one statement that writes
    only over the version it read (`repository.write`), so the uncontended write needs no
    transaction (BEGIN and COMMIT are two round trips), and a contended one never loses an update.
    """
    result = await attempt(False)
    for _ in range(LOCKED_ATTEMPTS):
        if result is not None:
            return result
        async with conn.transaction():
            result = await attempt(True)
    if result is None:
        raise Conflict(
            f"{resource_type}/{id_} kept being changed concurrently; retry.", code="version_conflict"
        )
    return result


def _check_if_match(expected: int | None, current: repo.Current | None) -> None:
    """412 unless the current version is the one If-Match names (when it names one)."""
    if expected is not None and (current is None or current.version_id != expected or current.deleted):
        have = "none" if current is None else str(current.version_id)
        raise PreconditionFailed(
            f"If-Match version {expected} does not match the current version ({have}).",
            code="version_conflict",
        )


async def _put_version(
    conn: asyncpg.Connection,
    actor: Actor,
    resource_type: str,
    id_: str,
    resource: dict[str, Any],
    current: repo.Current | None,
) -> Stored | None:
    """Write ``resource`` as the version after ``current``; None when another write got there first."""
    version = 1 if current is None else current.version_id + 1
    now = datetime.now(UTC)
    write = draft(resource, resource_type=resource_type, id_=id_, version_id=version, now=now, method="PUT")
    write.prior = current
    created = current is None or current.deleted
    if not await storage_for(resource_type).write(conn, [write], actor=actor):
        return None
    assert write.resource is not None
    return Stored(
        resource_type,
        id_,
        write.version_id,
        write.last_updated,
        write.resource,
        write.patient_ref,
        created=created,
    )


async def update(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    resource_type: str,
    id_: str,
    resource: dict[str, Any],
    if_match: str | None = None,
) -> Stored:
    """PUT: a new version (or create with the client's id). If-Match mismatch is 412.

    Optimistic (`_optimistic`), so ``conn`` need not be in a transaction. When a concurrent write
    lands between its read and its write, an update with If-Match answers 412 (the version it
    named is gone); one without is tried again under the row lock.
    """
    check_writable(resource_type, "update")
    check_id(id_)
    holders = validate_resource(resource, expected_type=resource_type)
    body_id = resource.get("id")
    if body_id is None:
        raise BadRequest("The resource must carry its id for an update.", code="missing_id")
    if body_id != id_:
        raise BadRequest(f"Resource id {body_id!r} does not match the URL id {id_!r}.", code="id_mismatch")
    expected = parse_if_match(if_match)
    pristine = orjson.dumps(resource)  # a write amends the dict (meta, an MRN): a retry starts over
    tries = 0

    async def attempt(lock: bool) -> Stored | None:
        nonlocal tries
        current = await storage_for(resource_type).read(conn, resource_type, id_, lock=lock, to_write=True)
        _check_if_match(expected, current)
        if tries == 0:  # a resource may refer to itself (it exists once written)
            await check_targets_exist(conn, local_targets(holders) - {(resource_type, id_)})
        document = resource if tries == 0 else orjson.loads(pristine)
        tries += 1
        return await _put_version(conn, actor, resource_type, id_, document, current)

    return await _optimistic(conn, attempt, resource_type, id_)


async def conditional_update(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    resource_type: str,
    query: str,
    resource: dict[str, Any],
    if_match: str | None = None,
) -> Stored:
    """PUT Type?search: update the one match, create when none, 412 when several."""
    check_writable(resource_type, "update")
    matches = await find_ids(conn, resource_type, query, limit=2, lock=True)
    if len(matches) > 1:
        raise PreconditionFailed(
            "The conditional update matched more than one resource.", code="multiple_matches"
        )
    if not matches:
        if resource.get("id"):
            return await update(
                conn=conn,
                actor=actor,
                resource_type=resource_type,
                id_=resource["id"],
                resource=resource,
            )
        return await create(conn=conn, actor=actor, resource_type=resource_type, resource=resource)
    if resource.get("id") not in (None, matches[0]):
        raise BadRequest(
            "The resource id does not match the resource found by the condition.", code="id_mismatch"
        )
    resource["id"] = matches[0]
    return await update(
        conn=conn,
        actor=actor,
        resource_type=resource_type,
        id_=matches[0],
        resource=resource,
        if_match=if_match,
    )


async def delete(*, conn: asyncpg.Connection, actor: Actor, resource_type: str, id_: str) -> int | None:
    """DELETE: a tombstone version; idempotent (returns the delete's version, None if nothing to do).
    Optimistic like `update`."""
    check_writable(resource_type, "delete")
    storage = storage_for(resource_type)

    async def attempt(lock: bool) -> tuple[int | None] | None:
        """(the tombstone's version, or None when there is nothing to delete); None: lost the race."""
        current = await storage.read(conn, resource_type, id_, lock=lock, to_write=True)
        if current is None or current.deleted:
            return (None,)
        version = current.version_id + 1
        now = datetime.now(UTC)
        tombstone = repo.Write(resource_type, id_, version, now, "DELETE", None, current.patient_ref, None)
        tombstone.prior = current
        written = await storage.write(conn, [tombstone], actor=actor)
        return (tombstone.version_id,) if written else None

    (version,) = await _optimistic(conn, attempt, resource_type, id_)
    return version


async def history(
    *,
    session: AsyncSession,
    actor: Actor,
    resource_type: str | None,
    id_: str | None,
    since: datetime | None,
    count: int,
    cursor: tuple[datetime, str, int] | None,
) -> list[asyncpg.Record]:
    """Versions newest first; one extra row tells whether there is a next page."""
    if resource_type:
        check_type(resource_type)
        check_read_access(actor, resource_type)
        check_interaction(resource_type, "history-instance" if id_ else "history-type")
    conn = await repo.connection(session)
    if resource_type and id_:
        current = await storage_for(resource_type).read(conn, resource_type, id_)
        if current is None:
            raise NotFound(f"{resource_type}/{id_} is not known.", code="resource_not_found")
    rows = await repo.history(conn, resource_type, id_, since=since, limit=count + 1, before=cursor)
    by_type: dict[str, list[tuple[str | None, str | None]]] = {}
    for row in rows[:count]:
        patient = None
        if row["resource"]:
            found = compartment_patient(orjson.loads(row["resource"]))
            patient = f"Patient/{found}" if found else None
        by_type.setdefault(row["resource_type"], []).append((patient, row["id"]))
    for logged_type, items in by_type.items():
        await audit(conn, actor, "history", logged_type, _dedupe(items))
    return rows


def _dedupe(items: Sequence[tuple[str | None, str | None]]) -> list[tuple[str | None, str | None]]:
    """One row per patient (resource id kept when a single resource was returned)."""
    if len(items) <= 1:
        return list(items)
    seen: dict[str | None, str | None] = {}
    for patient, _ in items:
        seen.setdefault(patient, None)
    return list(seen.items())


async def patch(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    resource_type: str,
    id_: str,
    operations: Any,
    if_match: str | None = None,
) -> Stored:
    """PATCH: apply a JSON Patch to the current version and store the result as a new version.
    Optimistic like `update`; a retry applies the patch to the version that won the race."""
    check_writable(resource_type, "patch")
    expected = parse_if_match(if_match)
    storage = storage_for(resource_type)

    async def attempt(lock: bool) -> Stored | None:
        current = await storage.read(conn, resource_type, id_, lock=lock, to_write=True)
        if current is None:
            raise NotFound(f"{resource_type}/{id_} is not known.", code="resource_not_found")
        if current.deleted or current.resource is None:
            raise Gone(f"{resource_type}/{id_} was deleted.", code="resource_deleted")
        _check_if_match(expected, current)
        patched = apply(orjson.loads(current.resource), operations)
        if (
            not isinstance(patched, dict)
            or patched.get("resourceType") != resource_type
            or patched.get("id") != id_
        ):
            raise BadRequest("The patch may not change resourceType or id.", code="invalid_patch")
        holders = validate_resource(patched, expected_type=resource_type)
        await check_targets_exist(conn, local_targets(holders))
        return await _put_version(conn, actor, resource_type, id_, patched, current)

    return await _optimistic(conn, attempt, resource_type, id_)
