"""`hims db partitions ensure`, and the migrate/verify hooks for consultation partitions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from hims.consultations.partitions import EnsureResult, ensure_partitions, missing_partitions
from hims.core.db import async_url
from hims.ops import hooks, migrate

out = Console()
partitions_app = typer.Typer(help="Yearly partitions of the consultations table.", no_args_is_help=True)


async def ensure(url: str, *, years_ahead: int = 2, from_year: int | None = None) -> EnsureResult:
    """Create missing partitions in their own transaction (commits on success)."""
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await ensure_partitions(conn, years_ahead=years_ahead, from_year=from_year)
    finally:
        await engine.dispose()


async def _after_migrate(url: str) -> str | None:
    result = await ensure(url)
    return f"created {', '.join(result.created)}" if result.created else None


@partitions_app.command("ensure")
def ensure_command(
    years_ahead: Annotated[int, typer.Option(min=0, max=20, help="Years after this one to prepare.")] = 2,
    from_year: Annotated[
        int | None, typer.Option(min=1900, max=2200, help="Also create years from this one (imports).")
    ] = None,
) -> None:
    """Create the consultations partitions for this year and the next YEARS_AHEAD (idempotent)."""
    import asyncio

    from hims.ops.cli import database_url
    from hims.settings import load_settings

    with database_url(load_settings()) as url:
        result = asyncio.run(ensure(url, years_ahead=years_ahead, from_year=from_year))
    for name in result.created:
        out.print(f"created {name}")
    out.print(f"partitions ready ({len(result.created)} created, {len(result.existing)} already there)")


def register_hooks() -> None:
    """Run `ensure` after `hims db migrate` and check partitions in `hims db verify` (once)."""
    if not any(name == "consultation partitions" for name, _ in hooks.AFTER_MIGRATE):
        hooks.AFTER_MIGRATE.append(("consultation partitions", _after_migrate))
    if missing_partitions not in migrate.VERIFY_CHECKS:
        migrate.VERIFY_CHECKS.append(missing_partitions)


register_hooks()
