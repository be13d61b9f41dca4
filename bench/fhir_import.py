"""Synthea import benchmark: all 28 transaction bundles into a fresh database, resources/s.

Each import runs in a child process with a tree's own code (`bench/_in_tree.py import`) into a
fresh database migrated by that tree's `hims db migrate`; only `import_paths` is in the clock.
Modes, alternated round by round (best of ``--rounds``, as the machine's load drifts):

- **as shipped**: domain record types (Patient, Encounter, vital-sign Observations...) go to their
  domain tables through their services. A fresh database has no consultations partition for the
  decades of history Synthea writes (74 years for these bundles, ~20 ms of DDL each, once in a
  database's life), so they are made before the clock starts, as they exist in any database that
  has seen those years;
- **cold**: the same into a database without those partitions: the import makes them first,
  inside the clock (what an operator sees on a new database);
- **baseline**, measured in the same run: every type in the JSONB store only (the domain storages
  left uninstalled; partitions made first, as for "as shipped");
- with ``--compare REF``: **REF as shipped**, the code of git revision REF checked out aside.

Prints the rates, the domain records' cost as a ratio to the baseline, current/REF, the rows each
import wrote outside the FHIR store (domain tables), and why files failed, if any did.

.venv/bin/python bench/fhir_import.py [--jobs N] [--rounds N] [--compare REF] [PATH...]
    (default: tests/data/fhir/synthea)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from _fhir_common import (
    ROOT,
    Tree,
    checkout,
    cleaning_up,
    current_tree,
    fresh_database,
    import_in_tree,
    verify_tree,
)

console = Console(highlight=False, soft_wrap=True)


@dataclass
class Mode:
    """One way of importing: a tree and an `_in_tree.py import --mode`."""

    label: str
    tree: Tree
    mode: str
    seconds: list[float] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> float:
        """The fastest round's seconds."""
        return min(self.seconds)

    @property
    def rate(self) -> float:
        """Resources per second in the fastest round."""
        return float(self.stats["resources"]) / self.best

    def failed(self) -> str:
        """How many files failed, and why."""
        why = "; ".join(f"{n} x {reason!r}" for reason, n in self.stats["failures"].items())
        return f"{self.stats['errors']} files failed{f': {why}' if why else ''}"


#: The tables that hold domain records (whichever a tree has): not the FHIR store, the PHI log,
#: accounts or the migration marker.
_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND c.relname NOT LIKE 'fhir\\_%' AND c.relname NOT IN ('alembic_version', 'phi_access_log', 'users')
ORDER BY 1
"""


async def run(mode: Mode, paths: list[Path], jobs: int) -> None:
    """Import into a fresh database with the mode's tree; record its time, stats and domain rows."""
    url = await fresh_database(f"hims_bench_fhir_import_{mode.mode}_{mode.tree.slug}", mode.tree)
    stats = await import_in_tree(mode.tree, url, paths, jobs=jobs, mode=mode.mode)
    mode.seconds.append(stats["seconds"])
    mode.stats = stats
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(_TABLES)
        counts = {
            t["relname"]: int(await conn.fetchval(f'SELECT count(*) FROM "{t["relname"]}"')) for t in tables
        }
        mode.rows = {t: n for t, n in counts.items() if n}
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--jobs", type=int, default=2, help="files in flight at once (fhir import --jobs)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every mode, alternated (best of N)")
    parser.add_argument("--compare", metavar="REF", help="also import with the code of git revision REF")
    args = parser.parse_args()
    paths = args.paths or [ROOT / "tests" / "data" / "fhir" / "synthea"]
    with contextlib.ExitStack() as stack:
        current = current_tree()
        shipped = Mode("as shipped", current, "shipped")
        modes = [shipped]
        if args.compare:
            ref = stack.enter_context(checkout(args.compare))
            modes.append(Mode(f"{ref.label} as shipped", ref, "shipped"))
        cold = Mode("cold", current, "cold")
        baseline = Mode("baseline (JSONB store only)", current, "jsonb")
        modes += [cold, baseline]
        for tree in {m.tree.root: m.tree for m in modes}.values():
            console.print(f"[bold]{tree.label}[/bold] ({tree.commit}): hims from {await verify_tree(tree)}")
        for round_no in range(args.rounds):
            for mode in modes:
                with console.status(f"round {round_no + 1}/{args.rounds}: {mode.label} ({mode.tree.label})…"):
                    await run(mode, paths, args.jobs)
                console.print(
                    f"  round {round_no + 1}: {mode.label} ({mode.tree.label}): {mode.seconds[-1]:.2f} s = "
                    f"{mode.stats['resources'] / mode.seconds[-1]:,.0f} resources/s"
                )
    n = args.rounds
    most = max(modes, key=lambda m: int(m.stats["resources"]))
    print(
        f"\nFHIR import (--jobs {args.jobs}), best of {n}: {most.stats['resources']:,} resources from "
        f"{most.stats['files']} files"
    )
    for mode in modes:
        print(
            f"  {mode.label:<30} {mode.tree.label:>10} ({mode.tree.commit}): {mode.best:6.2f} s = "
            f"{mode.rate:7,.0f} resources/s ({mode.failed()})"
        )
        rows = ", ".join(f"{t} {c:,}" for t, c in mode.rows.items())
        print(f"      rows written outside the FHIR store: {rows or 'none'}")
    if shipped.stats["errors"] or (args.compare and modes[1].stats["errors"]):
        print("files failed: the rates below compare imports that did not do the same work")
    if shipped.rate:
        print(f"domain records cost {baseline.rate / shipped.rate:.2f}x the JSONB-only baseline (same run)")
    if args.compare and modes[1].rate:
        theirs = modes[1]
        print(
            f"current/{theirs.tree.label}: {shipped.rate / theirs.rate:.2f} "
            f"({shipped.rate:,.0f} vs {theirs.rate:,.0f} resources/s, same run)"
        )
    rate = shipped.rate
    print(
        f"vs goal 3,000/s: {rate / 3000:.2f}x; vs HAPI 2,214/s: {rate / 2214:.2f}x; "
        f"vs Medplum 764/s: {rate / 764:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(cleaning_up(main()))
