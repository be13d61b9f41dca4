"""The FHIR R4 REST API under /fhir/R4 (thin: parse HTTP, call the service, shape the response).

`TABLE`, at the end, lists every interaction with its method, path and permission in matching
order; `hims.core.routetable` serves it without FastAPI's routing and dependency solving.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from hims.core.db import Database
from hims.core.errors import BadRequest, Gone, UnsupportedMediaType
from hims.core.routetable import PUBLIC, Entry, RouteTable
from hims.core.security import Actor
from hims.fhir import bundles, export, searchset, service
from hims.fhir.capability import capability_statement
from hims.fhir.outcome import FHIR_JSON
from hims.fhir.registry import type_def
from hims.fhir.scopes import check_scope
from hims.settings import Settings


class _TypeSegment(Convertor[str]):
    """A resource type in a path: FHIR type names start with a capital, so `metadata`, `_history`
    and `$export` never match it."""

    regex = "[A-Z][^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _IdSegment(_TypeSegment):
    """A resource id in a path: anything but `_history`, `_search` or an `$operation` (ids are
    [A-Za-z0-9.-]; a malformed id still reaches the route and gets its 400)."""

    regex = "[^/_$][^/]*"


register_url_convertor("fhirtype", _TypeSegment())
register_url_convertor("fhirid", _IdSegment())


def base_url(request: Request) -> str:
    """The FHIR base as the client addressed us."""
    return str(request.base_url).rstrip("/") + "/fhir/R4"


def fhir(
    body: bytes | str | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """An application/fhir+json response."""
    if isinstance(body, dict):
        body = orjson.dumps(body)
    return Response(body, status_code=status, headers=headers, media_type=FHIR_JSON)


async def _resource_to_write(request: Request, resource_type: str) -> dict[str, Any]:
    """The body of a create or update, once the token's scope allows writing a known type."""
    check_scope(request, resource_type, "write")
    service.check_type(resource_type)
    return await _body(request)


async def _body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "application/fhir+json").split(";")[0].strip().lower()
    if ctype and "json" not in ctype:
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r} is not supported; send application/fhir+json.",
            code="unsupported_media_type",
        )
    return service.parse_body(await request.body())


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _strict(request: Request) -> bool:
    return "handling=strict" in request.headers.get("prefer", "").replace(" ", "")


def _stored(stored: service.Stored, request: Request, status: int) -> Response:
    headers = {
        "ETag": stored.etag,
        "Last-Modified": stored.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    }
    if status == 201 or request.method in ("POST", "PUT"):
        headers["Location"] = (
            f"{base_url(request)}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        )
    if "return=minimal" in request.headers.get("prefer", ""):
        return Response(status_code=status, headers=headers)
    return fhir(stored.text, status, headers)


async def metadata(request: Request) -> Response:
    """The CapabilityStatement (public, as SMART clients fetch it before login)."""
    base = base_url(request)
    cached: dict[str, bytes] = request.app.state.__dict__.setdefault("fhir_capability", {})
    if base not in cached:
        cached[base] = orjson.dumps(capability_statement(base))
    return fhir(cached[base])


async def bundle(request: Request, session: AsyncSession, actor: Actor) -> Response:
    """Transaction or batch Bundle."""
    check_scope(request, "*", "write")
    data = await _body(request)
    kind, entries = bundles.parse_bundle(data)
    actor = dataclasses.replace(actor, channel="bundle")
    base = base_url(request)

    async def get_handler(rtype: str, url: str, action: str) -> dict[str, Any]:
        path, _, query = url.partition("?")
        if action == "read":
            parts = [p for p in path.split("/") if p]
            stored = await service.read(session=session, actor=actor, resource_type=parts[0], id_=parts[1])
            result: dict[str, Any] = orjson.loads(stored.text)
            return result
        text = await searchset.search(
            session=session,
            actor=actor,
            resource_type=rtype,
            params=bundles.parse_query(query),
            strict=False,
            base_url=base,
        )
        found: dict[str, Any] = orjson.loads(text)
        return found

    if kind == "transaction":
        result = await bundles.transaction(
            session=session, actor=actor, entries=entries, base_url=base, get_handler=get_handler
        )
    else:
        result = await bundles.batch(
            session=session, actor=actor, entries=entries, base_url=base, get_handler=get_handler
        )
    return fhir(result)


async def system_history(request: Request, session: AsyncSession, actor: Actor) -> Response:
    """History of every resource."""
    check_scope(request, "*", "read")
    return fhir(
        await searchset.history(
            session=session,
            actor=actor,
            resource_type=None,
            id_=None,
            params=_params(request),
            base_url=base_url(request),
            path="/_history",
        )
    )


# ---------------------------------------------------------------- Bulk Data


async def export_system(
    request: Request, session: AsyncSession, actor: Actor, settings: Settings
) -> Response:
    """System-level $export kick-off."""
    return await export.kick_off(
        request=request, session=session, actor=actor, settings=settings, level="system", group_id=None
    )


async def export_patients(
    request: Request, session: AsyncSession, actor: Actor, settings: Settings
) -> Response:
    """Patient-level $export kick-off."""
    return await export.kick_off(
        request=request, session=session, actor=actor, settings=settings, level="patient", group_id=None
    )


async def export_group(
    group_id: str, request: Request, session: AsyncSession, actor: Actor, settings: Settings
) -> Response:
    """Group-level $export kick-off."""
    return await export.kick_off(
        request=request, session=session, actor=actor, settings=settings, level="group", group_id=group_id
    )


async def export_status(job_id: str, request: Request, session: AsyncSession, actor: Actor) -> Response:
    """Poll a bulk export: 202 with X-Progress while running, 200 with the manifest when done."""
    job = await export.status(session=session, actor=actor, job_id=job_id)
    if job.status in ("queued", "running"):
        return Response(
            status_code=202, headers={"X-Progress": job.progress or job.status, "Retry-After": "1"}
        )
    if job.status == "error":
        raise BadRequest(job.error or "The export failed.", code="export_failed")
    if job.status == "cancelled":
        raise Gone("The export was cancelled.", code="export_cancelled")
    manifest = dict(job.manifest or {})
    files = f"{base_url(request)}/$export-file/{job_id}"
    manifest["output"] = [{**o, "url": f"{files}/{o['url']}"} for o in manifest.get("output", [])]
    return Response(orjson.dumps(manifest), media_type="application/json")


async def export_cancel(job_id: str, session: AsyncSession, actor: Actor, settings: Settings) -> Response:
    """Cancel an export and delete its files."""
    await export.cancel(session=session, actor=actor, job_id=job_id, settings=settings)
    return Response(status_code=202)


async def export_file(
    job_id: str, name: str, session: AsyncSession, actor: Actor, settings: Settings
) -> Response:
    """Download one NDJSON file of a completed export (authenticated)."""
    path = await export.file_path(session=session, actor=actor, job_id=job_id, name=name, settings=settings)
    return FileResponse(path, media_type="application/fhir+ndjson")


# ---------------------------------------------------------------- Patient/$everything


async def everything(patient_id: str, request: Request, session: AsyncSession, actor: Actor) -> Response:
    """Everything in the patient's compartment (paged with _count and next links)."""
    check_scope(request, "Patient", "read")
    return fhir(
        await searchset.everything(
            session=session,
            actor=actor,
            patient_id=patient_id,
            params=_params(request),
            base_url=base_url(request),
        )
    )


# ---------------------------------------------------------------- AuditEvent (read-only, audit:read)


async def search_audit_events(request: Request, session: AsyncSession, actor: Actor) -> Response:
    """Search the PHI access log as AuditEvents (newest first)."""
    return await _search("AuditEvent", request, session, actor, _params(request))


async def search_audit_events_post(request: Request, session: AsyncSession, actor: Actor) -> Response:
    """Search the PHI access log (POST form)."""
    form = await request.form()
    params = _params(request) + [(k, str(v)) for k, v in form.multi_items()]
    return await _search("AuditEvent", request, session, actor, params)


async def read_audit_event(id_: str, request: Request, session: AsyncSession, actor: Actor) -> Response:
    """One PHI access log row as an AuditEvent."""
    if id_ == "_history":  # this route shadows the generic type history: AuditEvent has none
        service.check_interaction("AuditEvent", "history-type")
    check_scope(request, "AuditEvent", "read")
    stored = await service.read(session=session, actor=actor, resource_type="AuditEvent", id_=id_)
    return _read_response(stored, request)


# ---------------------------------------------------------------- type level


async def _search(
    resource_type: str, request: Request, session: AsyncSession, actor: Actor, params: list[tuple[str, str]]
) -> Response:
    check_scope(request, resource_type, "read")
    return fhir(
        await searchset.search(
            session=session,
            actor=actor,
            resource_type=resource_type,
            params=params,
            strict=_strict(request),
            base_url=base_url(request),
        )
    )


async def search_type(resource_type: str, request: Request, session: AsyncSession, actor: Actor) -> Response:
    """Search (GET)."""
    return await _search(resource_type, request, session, actor, _params(request))


async def search_post(resource_type: str, request: Request, session: AsyncSession, actor: Actor) -> Response:
    """Search (POST form)."""
    form = await request.form()
    params = _params(request) + [(k, str(v)) for k, v in form.multi_items()]
    return await _search(resource_type, request, session, actor, params)


async def _history(
    resource_type: str, id_: str | None, request: Request, session: AsyncSession, actor: Actor
) -> Response:
    check_scope(request, resource_type, "read")
    path = f"/{resource_type}/{id_}/_history" if id_ else f"/{resource_type}/_history"
    return fhir(
        await searchset.history(
            session=session,
            actor=actor,
            resource_type=resource_type,
            id_=id_,
            params=_params(request),
            base_url=base_url(request),
            path=path,
        )
    )


async def type_history(resource_type: str, request: Request, session: AsyncSession, actor: Actor) -> Response:
    """History of every resource of a type."""
    return await _history(resource_type, None, request, session, actor)


async def create(resource_type: str, request: Request, database: Database, actor: Actor) -> Response:
    """Create (If-None-Exist makes it conditional)."""
    resource = await _resource_to_write(request, resource_type)
    if_none_exist = request.headers.get("if-none-exist")
    options = service.create_options(request.url.query) if request.url.query else None
    # A plain create reads, then writes in one statement (`service.create`): it needs no
    # transaction, two round trips fewer. If-None-Exist locks its criteria until the write commits.
    connection = database.driver_transaction if if_none_exist else database.statement_connection
    async with connection() as conn:
        stored = await service.create(
            conn=conn,
            actor=actor,
            resource_type=resource_type,
            resource=resource,
            if_none_exist=if_none_exist,
            options=options,
        )
    return _stored(stored, request, 201 if stored.created else 200)


async def conditional_update(
    resource_type: str, request: Request, database: Database, actor: Actor
) -> Response:
    """Conditional update: PUT Type?criteria."""
    resource = await _resource_to_write(request, resource_type)
    async with database.driver_transaction() as conn:
        stored = await service.conditional_update(
            conn=conn,
            actor=actor,
            resource_type=resource_type,
            query=request.url.query,
            resource=resource,
            if_match=request.headers.get("if-match"),
        )
    return _stored(stored, request, 201 if stored.created else 200)


# ---------------------------------------------------------------- instance level


def _read_response(stored: service.Stored, request: Request) -> Response:
    elements = request.query_params.get("_elements")
    if elements:
        stored.text = searchset._elements(stored.text, [e.strip() for e in elements.split(",")])
    return _stored(stored, request, 200)


async def read(resource_type: str, id_: str, request: Request, database: Database, actor: Actor) -> Response:
    """Read the current version (one statement: the read and its PHI log row)."""
    check_scope(request, resource_type, "read")
    stored = await service.read_one(database=database, actor=actor, resource_type=resource_type, id_=id_)
    return _read_response(stored, request)


async def update(
    resource_type: str, id_: str, request: Request, database: Database, actor: Actor
) -> Response:
    """Update (or create with this id); If-Match gives optimistic concurrency.

    No transaction: reads, then one write statement that writes only over the version read
    (`service.update`), so BEGIN and COMMIT are two round trips it does without."""
    resource = await _resource_to_write(request, resource_type)
    async with database.statement_connection() as conn:
        stored = await service.update(
            conn=conn,
            actor=actor,
            resource_type=resource_type,
            id_=id_,
            resource=resource,
            if_match=request.headers.get("if-match"),
        )
    return _stored(stored, request, 201 if stored.created else 200)


async def patch(resource_type: str, id_: str, request: Request, database: Database, actor: Actor) -> Response:
    """JSON Patch (application/json-patch+json); If-Match gives optimistic concurrency."""
    check_scope(request, resource_type, "write")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json-patch+json":
        raise UnsupportedMediaType("PATCH takes application/json-patch+json.", code="unsupported_media_type")
    try:
        operations = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BadRequest("The patch is not valid JSON.", code="invalid_json") from None
    async with database.statement_connection() as conn:
        stored = await service.patch(
            conn=conn,
            actor=actor,
            resource_type=resource_type,
            id_=id_,
            operations=operations,
            if_match=request.headers.get("if-match"),
        )
    return _stored(stored, request, 200)


async def delete(
    resource_type: str, id_: str, request: Request, database: Database, actor: Actor
) -> Response:
    """Delete (idempotent); reads then answer 410 Gone."""
    check_scope(request, resource_type, "write")
    async with database.statement_connection() as conn:
        version = await service.delete(conn=conn, actor=actor, resource_type=resource_type, id_=id_)
    headers = {"ETag": f'W/"{version}"'} if version else {}
    return Response(status_code=204, headers=headers)


async def instance_history(
    resource_type: str, id_: str, request: Request, session: AsyncSession, actor: Actor
) -> Response:
    """Every version of one resource, newest first."""
    return await _history(resource_type, id_, request, session, actor)


async def vread(
    resource_type: str, id_: str, version_id: str, request: Request, session: AsyncSession, actor: Actor
) -> Response:
    """Read one version."""
    check_scope(request, resource_type, "read")
    stored = await service.vread(
        session=session, actor=actor, resource_type=resource_type, id_=id_, version_id=version_id
    )
    return _stored(stored, request, 200)


AUDIT_READ = type_def("AuditEvent").read_permission


#: The FHIR API in matching order: the first entry whose method and path match serves, and a
#: request whose path matches entries but not their methods gets 405 with the first one's method
#: in `Allow`. Each entry tried costs a path match, so the most used come first; the convertors
#: keep the generic type and instance paths off `metadata`, `_history` and `$operations`.
#: AuditEvent's read and search come before the generic ones, which would take them: AuditEvent
#: has its own read permission (hims.fhir.registry: audit:read, not fhir:read). Its writes fall
#: through to the generic routes and the service refuses them (405).
async def log_denied(request: Request, actor: Actor) -> None:
    """A refused request on patient data goes into the PHI access log (outcome denied), naming
    the resource, or the patients a search asked for."""
    params = request.path_params
    resource_type = params.get("resource_type") or ("Patient" if "patient_id" in params else None)
    if resource_type is None:
        return  # bundles, histories and exports name no one type: the security event records them
    id_ = params.get("id_") or params.get("patient_id")
    if id_ is not None:
        action = _DENIED_INSTANCE.get(request.method, "read")
    else:
        searching = request.method == "GET" or request.url.path.endswith("/_search")
        action = "search" if searching else "create"
    asked = [
        value if "/" in value else f"Patient/{value}"
        for name in ("patient", "subject")
        for value in request.query_params.getlist(name)
        if value.startswith("Patient/") or name == "patient"
    ]
    await service.log_denied(
        request.app.state.db, actor, action=action, resource_type=resource_type, id_=id_, patients=asked
    )


_DENIED_INSTANCE = {"GET": "read", "PUT": "update", "PATCH": "update", "DELETE": "delete"}


TABLE = RouteTable(
    "/fhir/R4",
    [
        Entry("GET", "/AuditEvent", AUDIT_READ, search_audit_events),
        Entry("POST", "/AuditEvent/_search", AUDIT_READ, search_audit_events_post),
        Entry("GET", "/AuditEvent/{id_}", AUDIT_READ, read_audit_event),
        Entry("GET", "/{resource_type:fhirtype}/{id_:fhirid}", "fhir:read", read),
        Entry("PUT", "/{resource_type:fhirtype}/{id_:fhirid}", "fhir:write", update),
        Entry("DELETE", "/{resource_type:fhirtype}/{id_:fhirid}", "fhir:write", delete),
        Entry("PATCH", "/{resource_type:fhirtype}/{id_:fhirid}", "fhir:write", patch),
        Entry("GET", "/{resource_type:fhirtype}", "fhir:read", search_type),
        Entry("POST", "/{resource_type:fhirtype}", "fhir:write", create),
        Entry("PUT", "/{resource_type:fhirtype}", "fhir:write", conditional_update),
        Entry("GET", "/{resource_type:fhirtype}/{id_:fhirid}/_history", "fhir:read", instance_history),
        Entry("GET", "/{resource_type:fhirtype}/{id_:fhirid}/_history/{version_id}", "fhir:read", vread),
        Entry("POST", "/{resource_type:fhirtype}/_search", "fhir:read", search_post),
        Entry("GET", "/{resource_type:fhirtype}/_history", "fhir:read", type_history),
        Entry("GET", "/metadata", PUBLIC, metadata),  # SMART clients fetch it before they log in
        Entry("POST", "", "fhir:write", bundle),
        Entry("POST", "/", "fhir:write", bundle),
        Entry("GET", "/_history", "fhir:read", system_history),
        Entry("GET", "/$export", "fhir:export", export_system),
        Entry("GET", "/Patient/$export", "fhir:export", export_patients),
        Entry("GET", "/Group/{group_id}/$export", "fhir:export", export_group),
        Entry("GET", "/$export-status/{job_id}", "fhir:export", export_status),
        Entry("DELETE", "/$export-status/{job_id}", "fhir:export", export_cancel),
        Entry("GET", "/$export-file/{job_id}/{name}", "fhir:export", export_file),
        Entry("GET", "/Patient/{patient_id}/$everything", "fhir:read", everything),
    ],
    on_denied=log_denied,
)
