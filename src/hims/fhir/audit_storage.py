"""AuditEvent served read-only from ``phi_access_log`` (the storage seam's first domain storage).

Reads map one log row with `hims.fhir.mappings.audit_event.to_resource`; searches translate the
FHIR parameters to clauses for `hims.audit.repository`. Writes are refused: the log is
append-only and written only by `hims.audit.service.record_phi_access`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from hims.audit import service as log
from hims.core.errors import BadRequest, MethodNotAllowed
from hims.core.security import Actor
from hims.fhir import repository as repo
from hims.fhir.mappings import audit_event
from hims.fhir.mappings._common import HIMS
from hims.fhir.registry import RESOURCE_TYPES, type_def
from hims.fhir.search import decode_cursor, encode_cursor
from hims.fhir.values import parse_search_date

USER_SYSTEM = f"{HIMS}/sid/user"
DEFAULT_COUNT = 20
MAX_COUNT = 1000
_ACTIONS = {
    "C": ["create"],
    "R": ["read", "vread", "history"],
    "U": ["update"],
    "D": ["delete"],
}
_OUTCOMES = {"0": "success", "4": "denied", "8": "error"}
_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb", "ap")
_MICRO = timedelta(microseconds=1)
_IGNORED = ("_format", "_pretty")


def render(row: dict[str, Any]) -> dict[str, Any]:
    """The AuditEvent of one log row, with the meta every served resource carries."""
    resource = audit_event.to_resource(row)
    resource["meta"] = {"versionId": "1", "lastUpdated": resource["recorded"]}
    return resource


def _current(row: dict[str, Any]) -> repo.Current:
    return repo.Current(
        rid=int(row["id"]),
        version_id=1,
        deleted=False,
        last_updated=row["occurred_at"],
        resource=orjson.dumps(render(row)).decode(),
        patient_ref=None,  # reading the log is not PHI access to a patient's record
    )


def _log_id(id_: str) -> int | None:
    return int(id_) if id_.isdigit() and len(id_) <= 18 else None


def read_only_error(resource_type: str = "AuditEvent") -> MethodNotAllowed:
    """The 405 every write of AuditEvent gets."""
    return MethodNotAllowed(
        f"{resource_type} is read-only: it is rendered from the PHI access log, which only the "
        "server writes (one row per access). Only read and search are supported.",
        code="read_only_type",
        headers={"Allow": "GET"},
    )


class PhiLogStorage:
    """`Storage` for AuditEvent over ``phi_access_log`` (read-only, one version per row)."""

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
        """The AuditEvent of log row ``id_`` (None when there is no such row)."""
        log_id = _log_id(id_)
        row = await log.log_entry(conn, log_id) if log_id is not None else None
        return _current(row) if row else None

    async def read_many(
        self, conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
    ) -> dict[tuple[str, str], repo.Current]:
        """Several log rows at once."""
        ids = [i for i in (_log_id(k[1]) for k in keys) if i is not None]
        rows = await log.log_entries(conn, ids) if ids else []
        return {("AuditEvent", str(r["id"])): _current(r) for r in rows}

    async def vread(
        self, conn: asyncpg.Connection, resource_type: str, id_: str, version_id: int
    ) -> tuple[bool, str | None] | None:
        """Version 1 is the only version of a log row."""
        current = await self.read(conn, resource_type, id_)
        if current is None or version_id != 1:
            return None
        return False, current.resource

    async def write(
        self, conn: asyncpg.Connection, writes: Sequence[repo.Write], *, actor: Actor
    ) -> set[tuple[str, str]]:
        """Refused: the PHI access log is append-only and not written through FHIR."""
        raise read_only_error(writes[0].resource_type if writes else "AuditEvent")

    async def search(
        self, conn: asyncpg.Connection, params: Sequence[tuple[str, str]], *, strict: bool
    ) -> LogPage:
        """One page of AuditEvents for FHIR search ``params``, newest first unless ``_sort=date``."""
        query = parse(params, strict=strict)
        total = None
        if query.summary == "count" or query.total == "accurate":
            total = await log.count_entries(conn, query.groups)
        if query.summary == "count" or query.count == 0:
            return LogPage([], None, total, query)
        rows = await log.page_entries(
            conn, query.groups, descending=query.descending, after=query.after, limit=query.count + 1
        )
        next_cursor = None
        if len(rows) > query.count:
            rows = rows[: query.count]
            last = rows[-1]
            next_cursor = _encode_cursor(last["occurred_at"], int(last["id"]))
        return LogPage([render(r) for r in rows], next_cursor, total, query)


@dataclass
class LogQuery:
    """A parsed AuditEvent search."""

    groups: list[list[log.Clause]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    descending: bool = True
    after: tuple[datetime, int] | None = None
    summary: str | None = None
    total: str | None = None
    elements: list[str] | None = None
    cursor: str | None = None
    warnings: list[str] = field(default_factory=list)
    echo: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class LogPage:
    """One page of rendered AuditEvents."""

    resources: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None
    query: LogQuery


def _encode_cursor(moment: datetime, log_id: int) -> str:
    return encode_cursor([moment.isoformat(), log_id])


def parse(params: Sequence[tuple[str, str]], *, strict: bool) -> LogQuery:
    """FHIR AuditEvent search parameters → clauses for `hims.audit.repository`."""
    query = LogQuery()
    known = type_def("AuditEvent").params
    for name, value in params:
        base, _, modifier = name.partition(":")
        if base in _IGNORED or value == "":  # an empty value (outcome=) filters nothing
            continue
        if base == "_cursor":
            moment, log_id = decode_cursor(value, datetime.fromisoformat, int)
            query.after = (moment, log_id)
            query.cursor = value
            continue
        if base == "_count":
            try:
                query.count = max(0, min(int(value), MAX_COUNT))
            except ValueError:
                raise BadRequest(f"_count must be an integer, got {value!r}.", code="invalid_count") from None
        elif base == "_sort":
            if value.strip() not in ("date", "-date"):
                raise BadRequest(
                    f"Cannot sort AuditEvent by {value!r}; use date or -date.", code="invalid_sort"
                )
            query.descending = value.strip() == "-date"
        elif base == "_summary":
            if value not in ("count", "false"):
                raise BadRequest("AuditEvent supports _summary=count only.", code="unsupported_summary")
            query.summary = value
        elif base == "_total":
            query.total = value
        elif base == "_elements":
            query.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif base == "_id":
            ids = [_log_id(v) for v in _split(value)]
            query.groups.append([("id", i) if i is not None else ("nothing", None) for i in ids])
        elif base in known:
            query.groups.append(_clauses(base, modifier, value))
        else:
            message = f"Unknown or unsupported search parameter {name!r} for AuditEvent; it was ignored."
            if strict:
                raise BadRequest(message, code="unknown_search_parameter")
            query.warnings.append(message)
            continue
        query.echo.append((name, value))
    return query


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",")]


def _uuid(value: str, param: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadRequest(f"{param} takes a UUID, got {value!r}.", code="invalid_search_value") from None


def _clauses(param: str, modifier: str, value: str) -> list[log.Clause]:
    out: list[log.Clause] = []
    allowed = {"patient": ("", "Patient"), "entity": ("", *RESOURCE_TYPES), "agent": ("", "identifier")}
    if modifier not in allowed.get(param, ("",)):
        raise BadRequest(
            f"Modifier :{modifier} is not supported on AuditEvent {param!r}.", code="unsupported_modifier"
        )
    for item in _split(value):
        if param == "date":
            out.append(("occurred", _time_range(item)))
        elif param == "patient":
            pid = item.removeprefix("Patient/")
            if "/" in pid:
                raise BadRequest(
                    f"patient takes Patient/<id> or <id>, got {item!r}.", code="invalid_reference"
                )
            try:
                out.append(("patient_id", uuid.UUID(pid)))
            except ValueError:  # client-chosen ids are logged by reference only (docs/fhir.md)
                out.append(("resource_id", f"Patient/{pid}"))
        elif param == "entity":
            ref = f"{modifier}/{item}" if modifier and "/" not in item else item
            rtype, _, rid = ref.partition("/")
            if rtype not in RESOURCE_TYPES or not rid or "/" in rid:
                raise BadRequest(f"entity takes Type/id, got {item!r}.", code="invalid_reference")
            out.append(("resource_id", ref))
            if rtype == "Patient":
                with contextlib.suppress(ValueError):
                    out.append(("patient_id", uuid.UUID(rid)))
        elif param == "agent":
            if modifier == "identifier":
                system, sep, code = item.rpartition("|")
                if sep and system not in ("", USER_SYSTEM):
                    out.append(("nothing", None))
                    continue
                item = code
            out.append(("user_id", _uuid(item, "agent")))
        elif param == "outcome":
            code = item.rpartition("|")[2]
            if code not in (*_OUTCOMES, "12"):
                raise BadRequest(f"outcome is one of 0, 4, 8, 12; got {item!r}.", code="invalid_search_value")
            out.append(("outcome", _OUTCOMES[code]) if code in _OUTCOMES else ("nothing", None))
        elif param == "action":
            code = item.rpartition("|")[2]
            if code == "E":
                out.append(("action_not_in", [a for acts in _ACTIONS.values() for a in acts]))
            elif code in _ACTIONS:
                out.extend(("action", a) for a in _ACTIONS[code])
            else:
                raise BadRequest(f"action is one of C R U D E; got {item!r}.", code="invalid_search_value")
        elif param == "subtype":
            out.append(("action", item.rpartition("|")[2]))
    return out


def _time_range(value: str) -> log.TimeRange:
    prefix, text = ("eq", value)
    if len(value) > 2 and value[:2] in _PREFIXES:
        prefix, text = value[:2], value[2:]
    low, high = parse_search_date(text, "date")
    if prefix == "eq":
        return log.TimeRange(low, high)
    if prefix == "ne":
        return log.TimeRange(low, high, negate=True)
    if prefix in ("gt", "sa"):
        return log.TimeRange(high + _MICRO, None)
    if prefix in ("lt", "eb"):
        return log.TimeRange(None, low - _MICRO)
    if prefix == "ge":
        return log.TimeRange(low, None)
    if prefix == "le":
        return log.TimeRange(None, high)
    slack = max(abs(datetime.now(UTC) - low) / 10, timedelta(days=1))  # ap
    return log.TimeRange(low - slack, high + slack)
