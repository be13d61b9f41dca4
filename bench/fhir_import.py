"""Synthea import benchmark: all 28 transaction bundles into a fresh database, resources/s.

.venv/bin/python bench/fhir_import.py [PATH...]   (default: tests/data/fhir/synthea)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from _fhir_common import ROOT, fresh_database
from hims.core.db import Database
from hims.core.security import Actor
from hims.fhir.importer import import_paths


async def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [ROOT / "tests" / "data" / "fhir" / "synthea"]
    url = await fresh_database("hims_bench_fhir_import")
    db = Database(url, pool_size=2)
    try:
        started = time.perf_counter()
        stats = await import_paths(db, paths, actor=Actor.system("bench", channel="cli"))
        elapsed = time.perf_counter() - started
    finally:
        await db.dispose()
    rate = stats.resources / elapsed
    print(
        f"FHIR import: {stats.resources} resources from {stats.files} files in {elapsed:.2f} s "
        f"= {rate:,.0f} resources/s ({stats.errors} failed)"
    )
    print(
        f"vs goal 3,000/s: {rate / 3000:.2f}x; vs HAPI 2,214/s: {rate / 2214:.2f}x; "
        f"vs Medplum 764/s: {rate / 764:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
