"""Synthea import benchmark: all 28 transaction bundles into a fresh database, resources/s.

Three modes, each into its own fresh database, alternated twice (best of each, as the machine's
load drifts):

- **as shipped**: projected types are also written to their domain tables. A fresh database has
  no consultations partition for the decades of history Synthea writes (74 years for these
  bundles, ~20 ms of DDL each, once in a database's life), so they are made before the clock
  starts, as they exist in any database that has seen those years;
- **cold**: the same into a database without those partitions: `hims fhir import` makes them
  first, inside the clock (what an operator sees on a new database);
- **baseline**, measured in the same run: every type in the JSONB store only (partitions made
  first, as for "as shipped").

Prints the three rates, the projection's cost as a ratio, and the domain rows written.

.venv/bin/python bench/fhir_import.py [--jobs N] [PATH...]   (default: tests/data/fhir/synthea)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import asyncpg

from _fhir_common import ROOT, cleaning_up, fresh_database
from hims.core.db import Database
from hims.core.security import Actor
from hims.fhir import projection, storage
from hims.fhir.importer import ImportStats, discover, ensure_file_partitions, import_paths


async def run(
    paths: list[Path], name: str, jobs: int, *, partitions_first: bool
) -> tuple[ImportStats, float, dict[str, int]]:
    """Import into a fresh database; (stats, seconds, domain rows per projected table)."""
    url = await fresh_database(name)
    db = Database(url, pool_size=max(2, jobs))
    try:
        if partitions_first:
            await ensure_file_partitions(db, discover(paths))
        started = time.perf_counter()
        stats = await import_paths(db, paths, actor=Actor.system("bench", channel="cli"), jobs=jobs)
        elapsed = time.perf_counter() - started
    finally:
        await db.dispose()
    conn = await asyncpg.connect(url)
    try:
        tables = sorted({p.table.name for p in projection.PROJECTORS.values()})
        rows = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}
    finally:
        await conn.close()
    return stats, elapsed, rows


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--jobs", type=int, default=2, help="files in flight at once (fhir import --jobs)")
    args = parser.parse_args()
    paths = args.paths or [ROOT / "tests" / "data" / "fhir" / "synthea"]
    shipped = dict(storage.STORAGE)
    jsonb_only = {**shipped, **dict.fromkeys(projection.PROJECTORS, storage.JSONB)}
    best: dict[str, float] = {}

    def keep(mode: str, seconds: float) -> None:
        best[mode] = min(best.get(mode, seconds), seconds)

    # Alternate the modes twice and keep each one's best: the machine's load drifts.
    for _ in range(2):
        projected, seconds, rows = await run(
            paths, "hims_bench_fhir_import", args.jobs, partitions_first=True
        )
        keep("projected", seconds)
        _, seconds, _ = await run(paths, "hims_bench_fhir_import_cold", args.jobs, partitions_first=False)
        keep("cold", seconds)
        storage.STORAGE.update(jsonb_only)
        try:
            baseline, seconds, _ = await run(
                paths, "hims_bench_fhir_import_jsonb", args.jobs, partitions_first=True
            )
        finally:
            storage.STORAGE.clear()
            storage.STORAGE.update(shipped)
        keep("baseline", seconds)
    rate = projected.resources / best["projected"]
    base_rate = baseline.resources / best["baseline"]
    print(
        f"FHIR import (--jobs {args.jobs}): {projected.resources} resources from {projected.files} files in "
        f"{best['projected']:.2f} s (best of 2) = {rate:,.0f} resources/s ({projected.errors} failed)"
    )
    print(f"  domain rows written: {', '.join(f'{t} {n:,}' for t, n in rows.items())}")
    print(
        f"  cold (the import makes the consultations partitions of its years first, once per "
        f"database): {best['cold']:.2f} s = {projected.resources / best['cold']:,.0f} resources/s"
    )
    print(
        f"baseline (JSONB store only, same run, best of 2): {base_rate:,.0f} resources/s; "
        f"projection costs {base_rate / rate:.2f}x"
    )
    print(
        f"vs goal 3,000/s: {rate / 3000:.2f}x; vs HAPI 2,214/s: {rate / 2214:.2f}x; "
        f"vs Medplum 764/s: {rate / 764:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(cleaning_up(main()))
