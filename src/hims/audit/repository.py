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


# ---------------------------------------------------------------- hash chain (hims audit verify)

#: The canonical text of a log row ``l``: the verifier's own copy of what the insert trigger hashes
#: (migration 0015_audit_chain). It is deliberately not a call of anything stored in the database,
#: so a trigger function replaced there is caught by the rows it writes. See docs/audit.md.
CANONICAL_TEXT = (
    "concat_ws(',', l.id, to_char(l.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "coalesce(l.user_id::text, ''), quote_nullable(l.username), "
    "coalesce(l.patient_id::text, ''), quote_nullable(l.action), "
    "quote_nullable(l.resource_type), quote_nullable(l.resource_id), "
    "coalesce(l.ip_address::text, ''), quote_nullable(l.request_id), "
    "quote_nullable(l.channel), quote_nullable(l.outcome), l.chain, l.seq)"
)
#: The prev_hash of a chain's first row (seq 0).
ZERO_HASH = bytes(32)

# Every row of the id range [$1, $2] (occurred_at within [$3, $4] when given), checked: its seq
# follows its predecessor's in its chain, its prev_hash is that predecessor's row_hash (the zero
# hash at seq 0), its row_hash is what its content gives. The predecessor is the previous row of
# the chain within the range when that one has seq - 1 (a window over the range); else, and only
# then, the row (chain, seq - 1) of the whole log, through the unique index: the first row of each
# chain in the range is checked against its real predecessor. Counts come back, never rows.
# Each OFFSET 0 keeps a level from being flattened into the next: the hash is computed below the
# window's sort (which then sorts narrow rows), and each expression once per row (flattened, the
# planner copies it into every reference, and the copies' costs pushed it over jit_above_cost).
_CHECK_RANGE = f"""
SELECT count(*) AS rows,
       coalesce(array_agg(chain) FILTER (WHERE lag_seq IS NULL), '{{}}') AS chains,
       count(*) FILTER (WHERE broken) AS broken,
       min(id) FILTER (WHERE broken) AS first_broken
FROM (
  SELECT e.id, e.chain, e.lag_seq,
         e.seq < 0 OR e.expected_prev IS NULL OR e.prev_hash IS DISTINCT FROM e.expected_prev
           OR e.row_hash IS DISTINCT FROM e.computed AS broken
  FROM (
    SELECT w.*,
           CASE WHEN w.seq = 0 THEN $5::bytea
                WHEN w.lag_seq = w.seq - 1 THEN w.lag_hash
                ELSE (SELECT q.row_hash FROM phi_access_log q WHERE q.chain = w.chain AND q.seq = w.seq - 1)
           END AS expected_prev
    FROM (
      SELECT b.*, lag(b.seq) OVER win AS lag_seq, lag(b.row_hash) OVER win AS lag_hash
      FROM (
        SELECT l.id, l.chain, l.seq, l.prev_hash, l.row_hash,
               sha256(l.prev_hash || convert_to({CANONICAL_TEXT}, 'UTF8')) AS computed
        FROM phi_access_log l
        WHERE l.id >= $1::bigint AND l.id <= $2::bigint
          AND ($3::timestamptz IS NULL OR l.occurred_at >= $3::timestamptz)
          AND ($4::timestamptz IS NULL OR l.occurred_at <= $4::timestamptz)
        OFFSET 0
      ) b
      WINDOW win AS (PARTITION BY b.chain ORDER BY b.seq)
    ) w
    OFFSET 0
  ) e
  OFFSET 0
) checked
"""

# One row with what it is checked against, for the report: the hash its content gives and the
# nearest earlier row of its chain (seq - 1 when none is missing).
_CHECK_ROW = f"""
SELECT l.id, l.chain, l.seq, l.prev_hash, l.row_hash,
       sha256(l.prev_hash || convert_to({CANONICAL_TEXT}, 'UTF8')) AS computed,
       p.seq AS pred_seq, p.row_hash AS pred_hash
FROM phi_access_log l
LEFT JOIN LATERAL (
  SELECT q.seq, q.row_hash FROM phi_access_log q
  WHERE q.chain = l.chain AND q.seq < l.seq ORDER BY q.seq DESC LIMIT 1
) p ON true
WHERE l.id = $1::bigint
"""


@dataclass(frozen=True)
class RangeCheck:
    """What checking one id range found."""

    rows: int
    chains: list[int]
    broken: int
    first_broken: int | None


async def log_id_bounds(
    conn: asyncpg.Connection, low: datetime | None, high: datetime | None
) -> tuple[int, int] | None:
    """The lowest and highest id of the rows with occurred_at in [low, high] (None: no such row)."""
    args = _Args()
    where = _where([[("occurred", TimeRange(low, high))]] if low or high else [], args)
    sql = "SELECT min(id) AS first, max(id) AS last FROM phi_access_log"
    row = await conn.fetchrow(sql + (" WHERE " + " AND ".join(where) if where else ""), *args.values)
    if row is None or row["first"] is None:
        return None
    return int(row["first"]), int(row["last"])


async def check_chain_range(
    conn: asyncpg.Connection, first_id: int, last_id: int, low: datetime | None, high: datetime | None
) -> RangeCheck:
    """Check the seq, link and hash of every row with an id in [first_id, last_id] and occurred_at
    in [low, high] (either side open when None)."""
    row = await conn.fetchrow(_CHECK_RANGE, first_id, last_id, low, high, ZERO_HASH)
    assert row is not None  # an aggregate always answers one row
    return RangeCheck(
        rows=int(row["rows"]),
        chains=list(row["chains"]),
        broken=int(row["broken"]),
        first_broken=row["first_broken"],
    )


async def check_chain_row(conn: asyncpg.Connection, log_id: int) -> dict[str, Any] | None:
    """One row with its computed hash and its nearest predecessor's seq and row_hash (None: no row)."""
    row = await conn.fetchrow(_CHECK_ROW, log_id)
    return dict(row) if row else None
