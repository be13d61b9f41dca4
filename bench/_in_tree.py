"""One step of a benchmark run by the hims of a given source tree (this checkout or another revision).

The parent (`_fhir_common.Tree`) starts this file with the same virtual environment's Python and
``PYTHONPATH=<tree>/src`` first, so ``import hims`` finds that tree's package before the editable
install of this checkout; ``HIMS_BENCH_SRC`` names the tree, and the check below refuses to run
anything with a hims from elsewhere. The check runs at import, so it also runs in every `hims serve`
worker (uvicorn spawns them, and a spawned process imports its parent's main module).

    python bench/_in_tree.py where
    python bench/_in_tree.py migrate                          (DATABASE_URL in the environment)
    python bench/_in_tree.py token URL ROLE
    python bench/_in_tree.py import URL --jobs N --mode shipped|cold|jsonb PATH...
    python bench/_in_tree.py serve --port P --workers N       (DATABASE_URL etc. in the environment)
"""

from __future__ import annotations

import os
import sys

import hims

_SRC = os.environ.get("HIMS_BENCH_SRC")
if _SRC and not os.path.realpath(hims.__file__).startswith(os.path.realpath(_SRC) + os.sep):
    sys.exit(f"hims was imported from {hims.__file__}, not from the tree under test ({_SRC})")


def _wire(mode: str) -> None:
    """Install the domain storages where the tree has a composition root (later revisions; earlier
    ones set them at import). ``jsonb``: leave them out, so every type goes to the JSONB store."""
    import importlib.util

    if importlib.util.find_spec("hims.composition") is None:
        if mode == "jsonb":
            sys.exit("--mode jsonb needs a tree with hims.composition")
        return
    from hims import composition

    if mode != "jsonb":
        composition.wire()


async def _import(url: str, paths: list[str], jobs: int, mode: str) -> dict[str, object]:
    """Import ``paths`` into ``url`` with the tree's importer; what it did, how long it took, and
    why files failed (each reason once)."""
    import time
    from pathlib import Path

    from hims.core.db import Database
    from hims.core.security import Actor
    from hims.fhir.importer import discover, ensure_file_partitions, import_paths

    _wire(mode)
    files = [Path(p) for p in paths]
    failures: dict[str, int] = {}

    def on_file(path: Path, count: int, error: str | None) -> None:
        if error is not None:
            failures[error] = failures.get(error, 0) + 1

    db = Database(url, pool_size=max(2, jobs))
    try:
        if mode != "cold":
            # The consultations partitions of the bundles' years exist in any database that has
            # seen those years; "cold" times the import making them, as on a new database.
            await ensure_file_partitions(db, discover(files))
        started = time.perf_counter()
        stats = await import_paths(
            db, files, actor=Actor.system("bench", channel="cli"), on_file=on_file, jobs=jobs
        )
        seconds = time.perf_counter() - started
    finally:
        await db.dispose()
    return {
        "resources": stats.resources,
        "files": stats.files,
        "errors": stats.errors,
        "seconds": seconds,
        "failures": failures,
    }


def main(argv: list[str]) -> None:
    """Run the step named by ``argv[0]``."""
    import asyncio
    import json

    step, args = argv[0], argv[1:]
    if step == "where":
        print(os.path.realpath(hims.__file__))
    elif step in ("migrate", "serve"):
        from hims.cli import main as hims_main

        if step == "serve":
            print(f"hims imported from {os.path.realpath(hims.__file__)}", file=sys.stderr, flush=True)
        sys.argv = ["hims", *(["db", "migrate"] if step == "migrate" else ["serve", *args])]
        hims_main()
    elif step == "token":
        from benchauth import bench_token
        from hims.core.permissions import Role
        from hims.settings import Settings

        url, role = args
        print(asyncio.run(bench_token(Settings(hims_env="development"), url, Role(role))))
    elif step == "import":
        import argparse

        parser = argparse.ArgumentParser(prog="_in_tree.py import")
        parser.add_argument("url")
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--jobs", type=int, default=2)
        parser.add_argument("--mode", choices=("shipped", "cold", "jsonb"), default="shipped")
        ns = parser.parse_args(args)
        print(json.dumps(asyncio.run(_import(ns.url, ns.paths, ns.jobs, ns.mode))))
    else:
        sys.exit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
