"""`hims fhir ...`: FHIR data loading."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hims.core.db import Database
from hims.core.security import Actor
from hims.fhir.importer import discover, import_paths
from hims.settings import load_settings

app = typer.Typer(help="FHIR R4: import data sets.", no_args_is_help=True)
console = Console(stderr=True)


@app.command("import")
def import_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Bundle (.json[.gz]) or Bulk NDJSON files, or directories.")
    ],
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=16,
            help="Files imported at once, each on its own connection (one file's Python work overlaps "
            "another's database work).",
        ),
    ] = 2,
    allow_duplicates: Annotated[
        bool,
        typer.Option(
            "--allow-duplicates",
            help="Register every Patient even when it looks like a registered one (otherwise its bundle "
            "fails with possible_duplicates, as a second import of the same file would).",
        ),
    ] = False,
) -> None:
    """Load transaction Bundles and Bulk NDJSON files (Synthea Organizations/Practitioners stored once)."""
    settings = load_settings()
    if settings.database_url is None:
        console.print("DATABASE_URL is not set (run `hims db embedded start` or set it).")
        raise typer.Exit(2)
    files = discover(paths)
    if not files:
        console.print("No .json / .ndjson files found.")
        raise typer.Exit(1)

    async def run() -> int:
        assert settings.database_url is not None
        db = Database(settings.database_url.get_secret_value(), pool_size=max(2, jobs))
        actor = Actor.system("fhir-import", channel="import")
        started = time.perf_counter()
        try:
            with Progress(
                TextColumn("[bold]import"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[rate]}"),
                console=console,
            ) as progress:
                # With several jobs the consultation partitions of every file's years are made
                # before any file starts (1-3 s on a new database): say so rather than sit at 0.
                first = "making the consultation partitions of the files' years…" if jobs > 1 else ""
                task = progress.add_task("import", total=len(files), rate=first)
                done = {"resources": 0}

                def on_file(path: Path, count: int, error: str | None) -> None:
                    done["resources"] += count
                    elapsed = time.perf_counter() - started
                    progress.update(
                        task, advance=1, rate=f"{done['resources'] / max(elapsed, 1e-6):,.0f} resources/s"
                    )
                    if error and error.startswith("skipped"):
                        progress.console.print(f"[yellow]{error}[/yellow]")
                    elif error:
                        progress.console.print(f"[red]failed[/red] {path.name}: {error}")

                options = {"allow_duplicate": True} if allow_duplicates else None
                stats = await import_paths(
                    db, files, actor=actor, on_file=on_file, jobs=jobs, create_options=options
                )
        finally:
            await db.dispose()
        elapsed = time.perf_counter() - started
        typer.echo(
            f"imported {stats.resources} resources from {stats.files} files in {elapsed:.1f} s "
            f"({stats.resources / max(elapsed, 1e-6):,.0f} resources/s); {stats.errors} failed, "
            f"{stats.skipped} skipped"
        )
        return 1 if stats.errors else 0

    raise typer.Exit(asyncio.run(run()))
