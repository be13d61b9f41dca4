"""What every `hims` command needs to reach the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from hims.core.embedded import EmbeddedError, EmbeddedPostgres
from hims.settings import Settings

console = Console(stderr=True)


@contextmanager
def database_url(settings: Settings, *, keep_running: bool = False) -> Iterator[str]:
    """The DATABASE_URL, or the embedded cluster's (started if needed, stopped if we started it)."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    cluster = EmbeddedPostgres(settings.hims_data_dir.resolve() / "postgres")
    was_running = cluster.running_pid() is not None
    try:
        with console.status("Starting embedded PostgreSQL…"):
            url = cluster.start()
    except EmbeddedError as exc:
        console.print(f"[red]embedded PostgreSQL: {exc}[/red]")
        raise typer.Exit(1) from None
    try:
        yield url
    finally:
        if not was_running and not keep_running:
            cluster.stop()
