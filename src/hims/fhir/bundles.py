"""Bundles: transaction (all-or-nothing, one database transaction) and batch (independent entries)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.errors import BadRequest, HimsError, PreconditionFailed, ValidationFailed, field_error
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir import service, storage
from hims.fhir.outcome import error_outcome
from hims.fhir.registry import RESOURCE_TYPES
from hims.fhir.search import criteria_key, find_ids, lock_criteria
from hims.fhir.versions import draft, iso

METHODS = ("DELETE", "POST", "PUT", "GET")  # processing order for transactions (R4 3.1.0.11.2)
_INTERACTION = {"DELETE": "delete", "POST": "create", "PUT": "update"}


@dataclass
class Plan:
    """What one transaction entry will do."""

    index: int
    method: str
    resource_type: str
    id: str | None = None
    resource: dict[str, Any] | None = None
    action: str = ""  # create, update, delete, noop, read, search
    status: str = ""
    if_match: int | None = None
    query: str | None = None
    response: dict[str, Any] = field(default_factory=dict)
    #: The resource's references as sent (before urn:uuid / conditional references are rewritten).
    refs: list[str] = field(default_factory=list)
    #: The objects in the resource holding those references (rewritten in place).
    holders: list[dict[str, Any]] = field(default_factory=list)
    #: Request options for the domain (``allow_duplicate`` from the entry's request URL).
    options: dict[str, Any] = field(default_factory=dict)


def parse_bundle(data: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(type, entries) of a transaction or batch Bundle, or 400."""
    if data.get("resourceType") != "Bundle":
        raise BadRequest(
            "POST to the base URL takes a Bundle of type transaction or batch.", code="not_a_bundle"
        )
    kind = data.get("type")
    if kind not in ("transaction", "batch"):
        raise BadRequest(
            f"Bundle type {kind!r} cannot be processed; use transaction or batch.", code="invalid_bundle_type"
        )
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be a list.", code="invalid_bundle")
    return str(kind), entries


def _entry_error(index: int, message: str, code: str = "invalid_entry") -> ValidationFailed:
    return ValidationFailed(
        f"Bundle.entry[{index}]: {message}", code=code, errors=[field_error(f"entry[{index}]", message, code)]
    )


def _split_url(index: int, url: str) -> tuple[str, str | None, str | None]:
    """(type, id, query) of an entry request URL."""
    path, _, query = url.partition("?")
    parts = [p for p in path.strip("/").split("/") if p]
    if parts and parts[0] not in RESOURCE_TYPES:
        # absolute URL to our base
        while parts and parts[0] not in RESOURCE_TYPES:
            parts.pop(0)
    if not parts or parts[0] not in RESOURCE_TYPES:
        raise _entry_error(index, f"request.url {url!r} does not name a resource type", "invalid_url")
    rid = parts[1] if len(parts) > 1 else None
    if rid is not None:
        service.check_id(rid)
    return parts[0], rid, query or None


def _conditional_writes(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(type, criteria) of the bundle's conditional creates and updates, in entry order."""
    found = []
    for index, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            continue
        try:
            rtype, _, query = _split_url(index, str(request["url"]))
        except HimsError:
            continue  # the entry's own turn reports it
        if request.get("method") == "POST" and isinstance(request.get("ifNoneExist"), str):
            found.append((rtype, str(request["ifNoneExist"])))
        elif request.get("method") == "PUT" and query:
            found.append((rtype, query))
    return found


async def _match_or_lock(conn: asyncpg.Connection, criteria: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Search every conditional create/update's criteria; lock those that match nothing.

    Criteria that match something create nothing (the entry uses the match), so they need no
    lock. Criteria that match nothing may create, so they are locked, all in sorted order in one
    round trip (two bundles cannot deadlock on them), and searched again in their entry's turn,
    which then finds what a concurrent transaction created meanwhile (see `find_ids`). Locking
    every criteria, matched or not, made concurrent bundles that merely shared an existing
    Organization run one after the other. Returns the matches, by `criteria_key`."""
    matched: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for rtype, query in criteria:
        key = criteria_key(rtype, query)
        if key in matched or key in unmatched:
            continue
        try:
            ids = await find_ids(conn, rtype, query, limit=2)
        except HimsError:
            continue  # bad criteria: the entry's own turn reports them, in entry order
        if ids:
            matched[key] = ids
        else:
            unmatched.append(key)
    await lock_criteria(conn, unmatched)
    return matched


SearchFn = Callable[[str, str, str], Awaitable[dict[str, Any]]]


async def transaction(
    *,
    session: AsyncSession,
    actor: Actor,
    entries: list[dict[str, Any]],
    base_url: str,
    get_handler: SearchFn | None = None,
    check_references: bool = True,
    consume: bool = False,
    create_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Process a transaction: every entry or none. Raises on the first bad entry.

    ``consume``: the entries were parsed for this call alone, so their resources are changed in
    place (id, meta, rewritten references) instead of being copied first."""
    conn = await repo.connection(session)
    matched = await _match_or_lock(conn, _conditional_writes(entries))

    async def conditional_matches(rtype: str, query: str) -> list[str]:
        """What the criteria matched before locking, else a search now (under the lock)."""
        return matched.get(criteria_key(rtype, query)) or await find_ids(conn, rtype, query, limit=2)

    plans: list[Plan] = []
    id_map: dict[str, str] = {}
    conditional_seen: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _entry_error(index, "not an object")
        request = entry.get("request") or {}
        method = str(request.get("method", "")).upper()
        url = request.get("url")
        if method not in METHODS or not isinstance(url, str):
            raise _entry_error(index, "request.method (GET, POST, PUT, DELETE) and request.url are required")
        rtype, rid, query = _split_url(index, url)
        if method != "GET":
            try:
                service.check_interaction(rtype, _INTERACTION[method])
            except HimsError as exc:
                raise type(exc)(
                    f"Bundle.entry[{index}]: {exc.detail}", code=exc.code, headers=exc.headers
                ) from None
        plan = Plan(index, method, rtype, rid, query=query, options=dict(create_options or {}))
        if method == "POST" and query:
            try:
                plan.options |= service.create_options(query)
            except HimsError as exc:
                raise _entry_error(index, exc.detail, exc.code) from None
        full_url = entry.get("fullUrl")
        if method in ("POST", "PUT"):
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                raise _entry_error(index, "a POST or PUT entry needs a resource")
            # A private copy (references are rewritten in place); a JSON round trip is ~10x deepcopy.
            plan.resource = resource if consume else orjson.loads(orjson.dumps(resource))
            try:
                plan.holders = service.validate_resource(plan.resource, expected_type=rtype)
            except HimsError as exc:
                raise _entry_error(index, exc.detail, exc.code) from None
            if_match = request.get("ifMatch")
            plan.if_match = service.parse_if_match(if_match) if if_match else None
        if method == "POST":
            condition = request.get("ifNoneExist")
            if condition:
                key = (rtype, str(condition))
                if key in conditional_seen:
                    plan.id, plan.action, plan.status = conditional_seen[key], "noop", "200 OK"
                else:
                    matches = await conditional_matches(rtype, str(condition))
                    if len(matches) > 1:
                        raise PreconditionFailed(
                            f"Bundle.entry[{index}]: ifNoneExist matched several resources.",
                            code="multiple_matches",
                        )
                    if matches:
                        plan.id, plan.action, plan.status = matches[0], "noop", "200 OK"
                    conditional_seen[key] = plan.id or ""
            if not plan.action:
                plan.id, plan.action, plan.status = service.new_id(), "create", "201 Created"
                if condition:
                    conditional_seen[(rtype, str(condition))] = plan.id
        elif method == "PUT":
            if query:
                matches = await conditional_matches(rtype, query)
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{index}]: conditional update matched several resources.",
                        code="multiple_matches",
                    )
                plan.id = matches[0] if matches else (plan.resource or {}).get("id") or service.new_id()
            elif rid is None:
                raise _entry_error(index, "PUT needs Type/id or Type?criteria")
            elif (plan.resource or {}).get("id") not in (None, rid):
                raise _entry_error(index, "resource id does not match request.url", "id_mismatch")
            plan.action = "update"
        elif method == "DELETE":
            if query:
                matches = await find_ids(conn, rtype, query, limit=2)
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{index}]: conditional delete matched several resources.",
                        code="multiple_matches",
                    )
                plan.id = matches[0] if matches else None
            plan.action = "delete"
        else:
            plan.action = "read" if rid and not query else "search"
            plan.query = url
        if full_url and plan.id and method in ("POST", "PUT"):
            id_map[str(full_url)] = f"{rtype}/{plan.id}"
        plans.append(plan)

    # Conditional references (Practitioner?identifier=...) resolve to exactly one resource.
    cond_refs: dict[str, str] = {}
    for plan in plans:
        if plan.resource is None:
            continue
        plan.refs = [holder["reference"] for holder in plan.holders]
        for ref in plan.refs:
            if "?" in ref and ref not in cond_refs and not ref.startswith(("http://", "https://")):
                rtype, _, query = ref.partition("?")
                matches = await find_ids(conn, rtype, query, limit=2)
                if len(matches) != 1:
                    raise _entry_error(
                        plan.index,
                        f"conditional reference {ref!r} matched {len(matches)} resources",
                        "invalid_reference",
                    )
                cond_refs[ref] = f"{rtype}/{matches[0]}"
    mapping = {**id_map, **cond_refs}
    new_keys = {(p.resource_type, p.id) for p in plans if p.action in ("create", "update") and p.id}
    targets: set[tuple[str, str]] = set()
    for plan in plans:
        if plan.resource is None:
            continue
        if mapping:
            for holder in plan.holders:
                if holder["reference"] in mapping:
                    holder["reference"] = mapping[holder["reference"]]
        refs = [mapping.get(ref, ref) for ref in plan.refs]  # as just rewritten
        for ref in refs:
            if ref.startswith("urn:uuid:"):
                raise _entry_error(
                    plan.index, f"reference {ref!r} does not match any entry's fullUrl", "invalid_reference"
                )
        targets |= service.relative_targets(refs)
    missing_check = targets - new_keys if check_references else set()
    try:
        await service.check_targets_exist(conn, missing_check)
    except ValidationFailed as exc:
        raise ValidationFailed(
            f"Transaction rejected: {exc.detail}", code=exc.code, errors=exc.errors
        ) from None

    # Current versions of everything updated or deleted, locked, in one round trip.
    keys = [(p.resource_type, p.id) for p in plans if p.action in ("update", "delete") and p.id]
    current = await storage.read_many(conn, keys, lock=True)
    now = datetime.now(UTC)
    writes: list[tuple[Plan, repo.Write]] = []
    for plan in sorted(plans, key=lambda p: METHODS.index(p.method)):
        if plan.action in ("create", "update"):
            assert plan.resource is not None
            assert plan.id is not None
            version = 1
            existing = current.get((plan.resource_type, plan.id)) if plan.action == "update" else None
            if plan.action == "update":
                if plan.if_match is not None and (existing is None or existing.version_id != plan.if_match):
                    raise PreconditionFailed(
                        f"Bundle.entry[{plan.index}]: ifMatch version conflict.", code="version_conflict"
                    )
                version = existing.version_id + 1 if existing else 1
                plan.status = "200 OK" if existing and not existing.deleted else "201 Created"
            write = draft(
                plan.resource,
                resource_type=plan.resource_type,
                id_=plan.id,
                version_id=version,
                now=now,
                method=plan.method,
            )
            write.action = "update" if existing is not None and not existing.deleted else "create"
            write.options = plan.options
            writes.append((plan, write))
        elif plan.action == "delete":
            existing = current.get((plan.resource_type, plan.id)) if plan.id else None
            if existing and not existing.deleted:
                assert plan.id is not None
                tombstone = repo.Write(
                    plan.resource_type,
                    plan.id,
                    existing.version_id + 1,
                    now,
                    "DELETE",
                    None,
                    existing.patient_ref,
                    None,
                )
                tombstone.prior = existing
                writes.append((plan, tombstone))
            plan.response = {"status": "204 No Content"}
        elif plan.action == "noop":
            plan.response = {"status": "200 OK", "location": f"{plan.resource_type}/{plan.id}"}
    keys_written = [(w.resource_type, w.id) for _, w in writes]
    if len(keys_written) != len(set(keys_written)):
        raise BadRequest("The transaction writes the same resource more than once.", code="duplicate_entry")
    try:
        written = await storage.write(conn, [w for _, w in writes], actor=actor)
    except HimsError as exc:
        raise _naming_entry(exc, plans) from None
    if len(written) != len(keys_written):
        raise PreconditionFailed(
            "A resource in the transaction was changed concurrently; nothing was written.",
            code="version_conflict",
        )
    for plan, write in writes:
        if plan.action in ("create", "update"):
            plan.response = {
                "status": plan.status,
                "location": f"{plan.resource_type}/{plan.id}/_history/{write.version_id}",
                "etag": f'W/"{write.version_id}"',
                "lastModified": iso(write.last_updated),
            }
    for plan in plans:
        if plan.action in ("read", "search") and get_handler is not None:
            assert plan.query is not None
            plan.response = {"status": "200 OK"}
            plan.response["__resource"] = await get_handler(plan.resource_type, plan.query, plan.action)
    return response_bundle("transaction-response", plans, base_url)


def _naming_entry(error: HimsError, plans: list[Plan]) -> HimsError:
    """``error`` of a domain write, its message naming the entry whose resource it is about."""
    about = error.extra.get("resource")
    for plan in plans:
        if about == f"{plan.resource_type}/{plan.id}":
            error.detail = f"Bundle.entry[{plan.index}]: {error.detail}"
            error.args = (error.detail,)
            break
    return error


def response_bundle(kind: str, plans: list[Plan], base_url: str) -> dict[str, Any]:
    """The transaction-response / batch-response Bundle, entries in request order."""
    entries = []
    for plan in sorted(plans, key=lambda p: p.index):
        response = dict(plan.response)
        resource = response.pop("__resource", None)
        entry: dict[str, Any] = {"response": response}
        if plan.id and plan.action in ("create", "update", "noop"):
            entry["fullUrl"] = f"{base_url}/{plan.resource_type}/{plan.id}"
        if resource is not None:
            entry["resource"] = resource
        entries.append(entry)
    return {"resourceType": "Bundle", "id": service.new_id(), "type": kind, "entry": entries}


async def batch(
    *,
    session: AsyncSession,
    actor: Actor,
    entries: list[dict[str, Any]],
    base_url: str,
    get_handler: SearchFn | None = None,
    create_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Process entries independently, each in its own savepoint; failures become OperationOutcomes."""
    plans: list[Plan] = []
    for index, entry in enumerate(entries):
        plan = Plan(index, "", "")
        try:
            async with session.begin_nested():
                result = await transaction(
                    session=session,
                    actor=actor,
                    entries=[entry],
                    base_url=base_url,
                    get_handler=get_handler,
                    create_options=create_options,
                )
            item = result["entry"][0]
            plan.response = dict(item["response"])
            if "resource" in item:
                plan.response["__resource"] = item["resource"]
            if "fullUrl" in item:
                rtype, _, rid = item["fullUrl"].removeprefix(base_url + "/").partition("/")
                plan.resource_type, plan.id, plan.action = rtype, rid, "create"
        except HimsError as exc:
            plan.response = {"status": f"{exc.status} {exc.title}", "outcome": error_outcome(exc)}
        plans.append(plan)
    return response_bundle("batch-response", plans, base_url)


def parse_query(query: str) -> list[tuple[str, str]]:
    """Query string pairs."""
    return parse_qsl(query, keep_blank_values=True)
