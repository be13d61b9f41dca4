"""All SQL over ``phi_access_log`` for readers of the log (the FHIR AuditEvent view).

Runs on the caller's asyncpg connection (same transaction). Filters arrive as groups of clauses:
clauses inside a group are OR'd, groups are AND'ed (the shape of FHIR search parameters).
"""

# SQL is assembled from fixed fragments; every value is a bound parameter ($n), never spliced.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = (
    "SELECT id, occurred_at, user_id, username, patient_id, action, resource_type, resource_id, "
    "host(ip_address) AS ip_address, request_id, channel, outcome FROM phi_access_log"
)


@dataclass(frozen=True)
class TimeRange:
    """``low <= occurred_at <= high`` (either side open when None); ``negate`` inverts it."""

    low: datetime | None
    high: datetime | None
    negate: bool = False


#: (kind, value): id=int, patient_id=UUID, resource_id=str, user_id=UUID, outcome=str, action=str,
#: action_not_in=list[str], occurred=TimeRange, nothing=None (matches no row).
Clause = tuple[str, Any]

_EQUAL = {
    "id": "id = {}::bigint",
    "patient_id": "patient_id = {}::uuid",
    "resource_id": "resource_id = {}::text",
    "user_id": "user_id = {}::uuid",
    "outcome": "outcome = {}::text",
    "action": "action = {}::text",
    "action_not_in": "NOT (action = ANY({}::text[]))",
}


class _Args:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _clause(kind: str, value: Any, args: _Args) -> str:
    if kind == "nothing":
        return "FALSE"
    if kind == "occurred":
        assert isinstance(value, TimeRange)
        parts = []
        if value.low is not None:
            parts.append(f"occurred_at >= {args.add(value.low)}::timestamptz")
        if value.high is not None:
            parts.append(f"occurred_at <= {args.add(value.high)}::timestamptz")
        text = " AND ".join(parts) or "TRUE"
        return f"NOT ({text})" if value.negate else f"({text})"
    return _EQUAL[kind].format(args.add(value))


def _where(groups: Sequence[Sequence[Clause]], args: _Args) -> list[str]:
    return ["(" + " OR ".join(_clause(k, v, args) for k, v in group) + ")" for group in groups if group]


async def get(conn: asyncpg.Connection, log_id: int) -> dict[str, Any] | None:
    """One log row by id."""
    row = await conn.fetchrow(_COLUMNS + " WHERE id = $1::bigint", log_id)
    return dict(row) if row else None


async def get_many(conn: asyncpg.Connection, log_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Log rows by id (missing ids are absent)."""
    rows = await conn.fetch(_COLUMNS + " WHERE id = ANY($1::bigint[])", list(log_ids))
    return [dict(r) for r in rows]


async def count(conn: asyncpg.Connection, groups: Sequence[Sequence[Clause]]) -> int:
    """How many rows match."""
    args = _Args()
    where = _where(groups, args)
    sql = "SELECT count(*) FROM phi_access_log" + (" WHERE " + " AND ".join(where) if where else "")
    found = await conn.fetchval(sql, *args.values)
    return int(found or 0)


async def page(
    conn: asyncpg.Connection,
    groups: Sequence[Sequence[Clause]],
    *,
    descending: bool,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Up to ``limit`` matching rows in (occurred_at, id) order, after the keyset ``after``."""
    args = _Args()
    where = _where(groups, args)
    if after is not None:
        op = "<" if descending else ">"
        where.append(
            f"(occurred_at, id) {op} ({args.add(after[0])}::timestamptz, {args.add(after[1])}::bigint)"
        )
    direction = "DESC" if descending else "ASC"
    sql = (
        _COLUMNS
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY occurred_at {direction}, id {direction} LIMIT {args.add(limit)}::bigint"
    )
    return [dict(r) for r in await conn.fetch(sql, *args.values)]
