"""Checking the PHI access log's hash chains: every link, every hash (`hims audit verify`).

The log is cut into id ranges checked on ``jobs`` connections at once; each range is one
statement (`hims.audit.repository.check_chain_range`) that does the hashing in PostgreSQL and
returns counts only. Ranges are independent: a row whose predecessor lies outside its range is
checked against that predecessor, looked up in the whole log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hims.audit import repository
from hims.core.db import Database

#: Ids per checked range: large enough that the per-statement cost vanishes, small enough for a
#: smooth progress bar and an in-memory sort (about 4 MB per range).
RANGE_IDS = 20_000


@dataclass(frozen=True)
class Problem:
    """One failed check of a row; ``expected``/``found`` are hex hashes when the check compares hashes."""

    what: str
    expected: str | None = None
    found: str | None = None


@dataclass(frozen=True)
class BrokenRow:
    """A row that fails at least one check, with every check it fails."""

    id: int
    chain: int
    seq: int
    problems: list[Problem]


@dataclass
class VerifyReport:
    """What `verify_log` found."""

    rows: int = 0
    chains: set[int] = field(default_factory=set)
    broken: int = 0
    first_broken: BrokenRow | None = None
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        """True when every checked row passed every check."""
        return self.broken == 0

    @property
    def rows_per_second(self) -> float:
        """Rows checked per second of the whole run."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _ranges(first: int, last: int) -> Iterator[tuple[int, int]]:
    for start in range(first, last + 1, RANGE_IDS):
        yield start, min(start + RANGE_IDS - 1, last)


def describe(row: dict[str, Any]) -> list[Problem]:
    """The failed checks of a row as `repository.check_chain_row` returns it."""
    problems: list[Problem] = []
    seq, chain, pred_seq = int(row["seq"]), int(row["chain"]), row["pred_seq"]
    if seq < 0:
        problems.append(Problem(f"seq {seq} is negative: a chain starts at seq 0"))
    elif seq > 0 and pred_seq is None:
        missing = "seq 0 is missing" if seq == 1 else f"seq 0 to {seq - 1} are missing"
        problems.append(Problem(f"no row of chain {chain} before seq {seq}: {missing}"))
    elif seq > 0 and pred_seq != seq - 1:
        problems.append(
            Problem(
                f"seq gap: the row before it in chain {chain} has seq {pred_seq}, not {seq - 1} "
                "(rows are missing)"
            )
        )
    expected: bytes | None = repository.ZERO_HASH if seq == 0 else row["pred_hash"]
    if row["prev_hash"] != expected:
        what = (
            "prev_hash of a chain's first row is not the zero hash"
            if seq == 0
            else "prev_hash is not the row_hash of the row before it in the chain"
        )
        problems.append(Problem(what, _hex(expected), _hex(row["prev_hash"])))
    if row["row_hash"] != row["computed"]:
        problems.append(
            Problem(
                "row_hash is not sha256(prev_hash || canonical text of the row): "
                "the row's content or its hash was changed",
                _hex(row["computed"]),
                _hex(row["row_hash"]),
            )
        )
    return problems


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


async def verify_log(
    db: Database,
    *,
    low: datetime | None = None,
    high: datetime | None = None,
    jobs: int = 2,
    on_total: Callable[[int], None] | None = None,
    on_range: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every row with occurred_at in [low, high] (the whole log when both are None).

    ``on_total(ids)`` is called once with the number of ids to cover, ``on_range(ids)`` after each
    range with the ids it covered (for a progress bar).
    """
    started = time.perf_counter()
    report = VerifyReport()
    async with db.statement_connection() as conn:
        bounds = await repository.log_id_bounds(conn, low, high)
    if bounds is None:
        if on_total:
            on_total(0)
        report.seconds = time.perf_counter() - started
        return report
    first, last = bounds
    if on_total:
        on_total(last - first + 1)
    ranges = _ranges(first, last)
    first_broken: list[int] = []

    async def worker() -> None:
        async with db.statement_connection() as conn:
            # The window sorts a range in memory rather than on disk. The planner counts the
            # predecessor lookup for every row (it runs for a few), which would make it JIT-compile
            # each range's statement: seconds of compiling for milliseconds of work.
            await conn.execute("SET work_mem = '32MB'; SET jit = off")
            for start, end in ranges:  # shared iterator: each range goes to one worker
                found = await repository.check_chain_range(conn, start, end, low, high)
                report.rows += found.rows
                report.chains.update(found.chains)
                report.broken += found.broken
                if found.first_broken is not None:
                    first_broken.append(found.first_broken)
                if on_range:
                    on_range(end - start + 1)

    await asyncio.gather(*(worker() for _ in range(max(1, jobs))))
    if first_broken:
        async with db.statement_connection() as conn:
            row = await repository.check_chain_row(conn, min(first_broken))
        if row is not None:
            report.first_broken = BrokenRow(
                id=int(row["id"]), chain=int(row["chain"]), seq=int(row["seq"]), problems=describe(row)
            )
    report.seconds = time.perf_counter() - started
    return report
