"""`hims audit ...`: check the PHI access log's hash chains."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from hims.audit.verify import VerifyReport, verify_log
from hims.core.db import Database
from hims.settings import load_settings

app = typer.Typer(help="The PHI access log: check that it is intact.", no_args_is_help=True)
console = Console(stderr=True)

EXAMPLES = "e.g. 2026-12-01, 2026-12-01T08:30, 2026-12-01T08:30:00+01:00"


class BadBound(ValueError):
    """A --from/--to value that is not an ISO 8601 date or time."""


def parse_bound(value: str, *, end_of_day: bool) -> datetime:
    """An ISO 8601 date or time as an aware datetime: UTC unless it carries an offset; a date
    alone is its first microsecond (``end_of_day``: its last)."""
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1, microseconds=-1) if end_of_day else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadBound(value) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _fail_input(message: str) -> typer.Exit:
    console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command("verify")
def verify_command(
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help=f"Check only rows with occurred_at at or after this ISO 8601 time, UTC unless it "
            f"has an offset ({EXAMPLES}).",
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Check only rows with occurred_at at or before this time; a date alone means the "
            "end of that day.",
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=16, help="Connections checking ranges at once.")
    ] = 2,
) -> None:
    """Check every link and hash of the PHI access log's chains: exit 0 intact, 1 broken, 2 bad input."""
    try:
        low = parse_bound(from_, end_of_day=False) if from_ is not None else None
    except BadBound:
        raise _fail_input(f"--from {from_!r} is not an ISO 8601 date or time ({EXAMPLES})") from None
    try:
        high = parse_bound(to, end_of_day=True) if to is not None else None
    except BadBound:
        raise _fail_input(f"--to {to!r} is not an ISO 8601 date or time ({EXAMPLES})") from None
    if low is not None and high is not None and low > high:
        raise _fail_input(f"--from ({low.isoformat()}) is after --to ({high.isoformat()})")

    from hims.core.commands import database_url

    settings = load_settings()
    with database_url(settings) as url:
        try:
            report = asyncio.run(_run(url, low, high, jobs))
        except asyncpg.UndefinedColumnError:
            console.print("error: the log has no hash chain yet: run `hims db migrate`")
            raise typer.Exit(1) from None
        except asyncpg.PostgresError as exc:
            detail = str(exc).split("\n")[0]
            console.print(f"database error: {type(exc).__name__}: {detail}", markup=False)
            raise typer.Exit(1) from None
    _print(report, low, high)
    if not report.intact:
        raise typer.Exit(1)


async def _run(url: str, low: datetime | None, high: datetime | None, jobs: int) -> VerifyReport:
    db = Database(url, pool_size=jobs + 1)
    try:
        with Progress(
            TextColumn("[bold]verify"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("verify", total=None)
            return await verify_log(
                db,
                low=low,
                high=high,
                jobs=jobs,
                on_total=lambda ids: progress.update(task, total=ids),
                on_range=lambda ids: progress.update(task, advance=ids),
            )
    finally:
        await db.dispose()


def _print(report: VerifyReport, low: datetime | None, high: datetime | None) -> None:
    scope = ""
    if low is not None or high is not None:
        first = low.isoformat() if low else "…"
        last = high.isoformat() if high else "…"
        scope = f" with occurred_at in [{first}, {last}]"
    typer.echo(
        f"checked {_count(report.rows, 'row')}{scope} in {_count(len(report.chains), 'chain')} "
        f"in {report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s)"
    )
    if report.intact:
        typer.echo("intact: every link and every hash checks out")
        return
    verb = "fails its checks" if report.broken == 1 else "fail their checks"
    typer.echo(f"BROKEN: {_count(report.broken, 'row')} {verb}")
    broken = report.first_broken
    if broken is None:
        return
    typer.echo(f"first broken row (lowest id): id {broken.id}, chain {broken.chain}, seq {broken.seq}")
    for problem in broken.problems:
        typer.echo(f"  {problem.what}")
        if problem.expected is not None or problem.found is not None:
            typer.echo(f"    expected {problem.expected or '(unknown: no such row)'}")
            typer.echo(f"    found    {problem.found or '(none)'}")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
