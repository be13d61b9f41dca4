"""Search, history and $everything results as Bundles (entries spliced in as stored JSON text)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.errors import BadRequest
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir import search as fsearch
from hims.fhir import service, storage
from hims.fhir.audit_storage import PhiLogStorage
from hims.fhir.outcome import issue, outcome
from hims.fhir.versions import iso

ALWAYS_ELEMENTS = ("resourceType", "id", "meta")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _entry(base_url: str, rtype: str, rid: str, text: str, mode: str | None) -> str:
    search = f',"search":{{"mode":"{mode}"}}' if mode else ""
    return f'{{"fullUrl":{_dumps(f"{base_url}/{rtype}/{rid}")},"resource":{text}{search}}}'


def _elements(text: str, elements: Sequence[str]) -> str:
    data = orjson.loads(text)
    keep = {k: v for k, v in data.items() if k in elements or k in ALWAYS_ELEMENTS}
    meta = dict(keep.get("meta") or {})
    meta["tag"] = [
        *meta.get("tag", []),
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"},
    ]
    keep["meta"] = meta
    return _dumps(keep)


def bundle_text(kind: str, entries: list[str], links: list[tuple[str, str]], total: int | None) -> bytes:
    """A Bundle as JSON bytes from already-serialised entries."""
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": service.new_id(),
        "meta": {"lastUpdated": iso(datetime.now(UTC))},
        "type": kind,
    }
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": r, "url": u} for r, u in links]
    text = _dumps(head)[:-1]
    return (text + ',"entry":[' + ",".join(entries) + "]}").encode()


async def search(
    *,
    session: AsyncSession,
    actor: Actor,
    resource_type: str,
    params: list[tuple[str, str]],
    strict: bool,
    base_url: str,
) -> bytes:
    """A searchset Bundle for ``params`` (with includes, paging links and warnings)."""
    service.check_type(resource_type)
    service.check_read_access(actor, resource_type)
    store = storage.storage_for(resource_type)
    if isinstance(store, PhiLogStorage):
        return await _log_search(
            store, session, actor, resource_type, params, strict=strict, base_url=base_url
        )
    request = fsearch.parse(resource_type, params, strict=strict)
    conn = await repo.connection(session)
    page = await fsearch.execute(conn, request)
    entries: list[str] = []
    for row in page.rows:
        text = row["resource"] if request.elements is None else _elements(row["resource"], request.elements)
        entries.append(_entry(base_url, row["resource_type"], row["id"], text, "match"))
    extra = await _included(conn, request, page.rows)
    for row in extra:
        entries.append(_entry(base_url, row["resource_type"], row["id"], row["resource"], "include"))
    await audit_hits(conn, actor, "search", [*page.rows, *extra])
    return _searchset(entries, request, f"{base_url}/{resource_type}", page.next_cursor, page.total)


async def _log_search(
    store: PhiLogStorage,
    session: AsyncSession,
    actor: Actor,
    resource_type: str,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    base_url: str,
) -> bytes:
    """A searchset over the PHI access log (no PHI log rows are written for it: docs/fhir.md)."""
    conn = await repo.connection(session)
    page = await store.search(conn, params, strict=strict)
    service.log.info(
        "fhir.search_unlogged_type",
        resource_type=resource_type,
        returned=len(page.resources),
        user_id=str(actor.user_id),
    )
    query = page.query
    entries = []
    for resource in page.resources:
        text = _dumps(resource)
        if query.elements is not None:
            text = _elements(text, query.elements)
        entries.append(_entry(base_url, resource_type, resource["id"], text, "match"))
    return _searchset(entries, query, f"{base_url}/{resource_type}", page.next_cursor, page.total)


class _Query(Protocol):
    """What a searchset echoes back: the parameters, the page's cursor, ignored-parameter warnings."""

    echo: list[tuple[str, str]]
    cursor: str | None
    warnings: list[str]


def _searchset(
    entries: list[str], query: _Query, url: str, next_cursor: str | None, total: int | None
) -> bytes:
    """The searchset Bundle of ``entries``: an OperationOutcome entry for the ignored parameters,
    and the self and next links (``next`` carrying the cursor of the following page)."""
    if query.warnings:
        warn = outcome(
            [
                issue("warning", "not-supported", w, detail_code="unknown_search_parameter")
                for w in query.warnings
            ]
        )
        entries.append(f'{{"resource":{_dumps(warn)},"search":{{"mode":"outcome"}}}}')
    self_url = f"{url}?{urlencode(query.echo)}"
    links = [("self", self_url if not query.cursor else self_url + "&_cursor=" + query.cursor)]
    if next_cursor:
        links.append(("next", f"{url}?{urlencode([*query.echo, ('_cursor', next_cursor)])}"))
    return bundle_text("searchset", entries, links, total)


async def audit_hits(
    conn: asyncpg.Connection, actor: Actor, action: str, rows: Sequence[asyncpg.Record]
) -> None:
    """One PHI log row per resource returned (its patient, type and id), one statement per type."""
    by_type: dict[str, list[tuple[str | None, str | None]]] = {}
    for row in rows:
        by_type.setdefault(row["resource_type"], []).append((row["patient_ref"], row["id"]))
    for resource_type, items in by_type.items():
        await service.audit(conn, actor, action, resource_type, items)


#: Rounds of ``:iterate`` includes, and the most resources all includes of one page may add.
MAX_INCLUDE_ROUNDS = 4
MAX_INCLUDED = 5000


async def _included(
    conn: asyncpg.Connection, request: fsearch.SearchRequest, rows: Sequence[asyncpg.Record]
) -> list[asyncpg.Record]:
    """The ``_include``/``_revinclude`` resources of a page; ``:iterate`` ones also of what they add."""
    plain = (request.includes, request.revincludes)
    iterate = (request.iterate_includes, request.iterate_revincludes)
    if not rows or not any([*plain, *iterate]):
        return []
    seen = {(r["resource_type"], r["id"]) for r in rows}
    out: list[asyncpg.Record] = []
    frontier: Sequence[asyncpg.Record] = rows
    for round_ in range(MAX_INCLUDE_ROUNDS):
        includes = [*iterate[0], *(plain[0] if round_ == 0 else [])]
        revincludes = [*iterate[1], *(plain[1] if round_ == 0 else [])]
        added: list[asyncpg.Record] = []
        for source, param, target in includes:
            rids = [r["rid"] for r in frontier if r["resource_type"] == source]
            if not rids:
                continue
            keys = [k for k in await repo.references_from(conn, rids, param, target) if k not in seen]
            added.extend(_unseen(await repo.fetch_by_keys(conn, keys), seen))
        keys = list({(r["resource_type"], r["id"]) for r in frontier})
        for source, param, _ in revincludes:
            found = await repo.referencing(conn, source, param, keys, fsearch.MAX_COUNT)
            added.extend(_unseen(await repo.fetch_by_rids(conn, found), seen))
        out.extend(added)
        if not added or not any(iterate) or len(out) >= MAX_INCLUDED:
            break
        frontier = added
    return out[:MAX_INCLUDED]


def _unseen(rows: Sequence[asyncpg.Record], seen: set[tuple[str, str]]) -> list[asyncpg.Record]:
    """``rows`` not returned yet (and now marked as returned)."""
    out = []
    for row in rows:
        key = (row["resource_type"], row["id"])
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


async def everything(
    *, session: AsyncSession, actor: Actor, patient_id: str, params: list[tuple[str, str]], base_url: str
) -> bytes:
    """Patient/$everything: the Patient and its compartment, paged in storage order."""
    await service.read(session=session, actor=actor, resource_type="Patient", id_=patient_id)
    query = dict(params)
    try:
        count = min(int(query.get("_count", "1000")), 5000)
    except ValueError:
        raise BadRequest("_count must be an integer.", code="invalid_count") from None
    after = 0
    if query.get("_cursor"):
        (after,) = fsearch.decode_cursor(query["_cursor"], int)
    since = None
    if query.get("_since"):
        since = fsearch.parse_search_date(query["_since"], "_since")[0]
    types = [t for t in query.get("_type", "").split(",") if t] or None
    conn = await repo.connection(session)
    rows = await repo.compartment_page(
        conn, f"Patient/{patient_id}", after_rid=after, limit=count + 1, types=types, since=since
    )
    has_next = len(rows) > count
    rows = rows[:count]
    entries = [_entry(base_url, r["resource_type"], r["id"], r["resource"], "match") for r in rows]
    await audit_hits(conn, actor, "everything", rows)
    echo = [(k, v) for k, v in params if k != "_cursor"]
    base = f"{base_url}/Patient/{patient_id}/$everything"
    links = [("self", f"{base}?{urlencode(params)}")]
    if has_next:
        links.append(
            ("next", f"{base}?{urlencode([*echo, ('_cursor', fsearch.encode_cursor([rows[-1]['rid']]))])}")
        )
    return bundle_text("searchset", entries, links, None)


async def history(
    *,
    session: AsyncSession,
    actor: Actor,
    resource_type: str | None,
    id_: str | None,
    params: list[tuple[str, str]],
    base_url: str,
    path: str,
) -> bytes:
    """A history Bundle, newest first, paged by cursor."""
    query = dict(params)
    try:
        count = max(1, min(int(query.get("_count", "100")), 1000))
    except ValueError:
        raise BadRequest("_count must be an integer.", code="invalid_count") from None
    since = fsearch.parse_search_date(query["_since"], "_since")[0] if query.get("_since") else None
    cursor = None
    if query.get("_cursor"):
        moment, rid, version = fsearch.decode_cursor(query["_cursor"], datetime.fromisoformat, str, int)
        cursor = (moment, rid, version)
    rows = await service.history(
        session=session,
        actor=actor,
        resource_type=resource_type,
        id_=id_,
        since=since,
        count=count,
        cursor=cursor,
    )
    entries = []
    for row in rows[:count]:
        url = f"{base_url}/{row['resource_type']}/{row['id']}"
        method = row["method"]
        request = {
            "method": method,
            "url": f"{row['resource_type']}/{row['id']}" if method != "POST" else row["resource_type"],
        }
        status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[method]
        response = {
            "status": status,
            "etag": f'W/"{row["version_id"]}"',
            "lastModified": iso(row["last_updated"]),
        }
        resource = f',"resource":{row["resource"]}' if row["resource"] else ""
        entries.append(
            f'{{"fullUrl":{_dumps(url)}{resource},"request":{_dumps(request)},"response":{_dumps(response)}}}'
        )
    echo = [(k, v) for k, v in params if k != "_cursor"]
    links = [("self", f"{base_url}{path}?{urlencode(params)}")]
    if len(rows) > count:
        last = rows[count - 1]
        cur = fsearch.encode_cursor([last["last_updated"].isoformat(), last["id"], last["version_id"]])
        links.append(("next", f"{base_url}{path}?{urlencode([*echo, ('_cursor', cur)])}"))
    return bundle_text("history", entries, links, None)
