"""Operational commands: serve, up, worker, config, db."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from hims.core.commands import database_url
from hims.core.embedded import EmbeddedPostgres
from hims.settings import SECRET_FIELDS, Settings, load_settings, mask_url

console = Console(stderr=True)
out = Console()

config_app = typer.Typer(help="Show and check the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(
    help="Database: migrate, seed, verify, downgrade, embedded cluster.", no_args_is_help=True
)
embedded_app = typer.Typer(
    help="The embedded PostgreSQL used when DATABASE_URL is unset.", no_args_is_help=True
)
db_app.add_typer(embedded_app, name="embedded")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root `hims` app."""
    app.add_typer(config_app, name="config")
    app.add_typer(db_app, name="db")
    app.command("serve")(serve)
    app.command("up")(up)
    app.command("worker")(worker)


def _fail_on_problems(settings: Settings) -> None:
    problems = settings.problems()
    if problems and settings.is_production:
        for line in problems:
            typer.echo(f"configuration error: {line}", err=True)
        raise typer.Exit(2)


# ---------------------------------------------------------------- config


def _effective(settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in SECRET_FIELDS and value is not None:
            raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            value = mask_url(raw) if name in ("database_url", "redis_url") else "********"
        elif name == "database_read_urls":
            value = [mask_url(u) for u in value]
        elif hasattr(value, "total_seconds"):
            value = f"{int(value.total_seconds())}s"
        elif not isinstance(value, str | int | float | bool | list | type(None)):
            value = str(value)
        values[name.upper()] = value
    return values


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Print the effective configuration with secrets masked."""
    settings = load_settings()
    values = _effective(settings)
    if as_json:
        out.print_json(json.dumps(values))
        return
    table = Table("variable", "value", title="Effective configuration")
    for key, value in values.items():
        table.add_row(key, "(unset)" if value is None else str(value))
    out.print(table)


@config_app.command("check")
def config_check() -> None:
    """Exit non-zero listing every problem with the configuration for its environment."""
    settings = load_settings()
    problems = settings.problems()
    for line in problems:
        typer.echo(f"problem: {line}")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"configuration OK for {settings.hims_env}")


# ---------------------------------------------------------------- db


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply every pending migration (safe to run from several replicas at once)."""
    from hims.ops import migrate

    settings = load_settings()
    with database_url(settings) as url:
        with console.status("Waiting for the migration lock and migrating…"):
            before, after = migrate.upgrade(url)
        if before == after:
            out.print(f"database already at head {list(after)}")
        else:
            out.print(f"migrated {list(before) or 'empty database'} → {list(after)}")
        _warn_missing_extensions(url)
        _after_migrate(url)


def _warn_missing_extensions(url: str) -> None:
    from hims.ops import migrate

    missing = migrate.missing_extensions(url)
    if missing:
        typer.echo(
            f"warning: PostgreSQL extensions not available: {', '.join(missing)}; {migrate.EXTENSION_HINT}",
            err=True,
        )


def _after_migrate(url: str) -> None:
    """What runs after `hims db migrate` (partitions ahead etc.: `hims.composition.AFTER_MIGRATE`)."""
    from hims import composition

    for name, hook in composition.AFTER_MIGRATE:
        message = asyncio.run(hook(url))
        if message:
            out.print(f"{name}: {message}")


partitions_app = typer.Typer(help="Yearly partitions of the consultations table.", no_args_is_help=True)
db_app.add_typer(partitions_app, name="partitions")


@partitions_app.command("ensure")
def partitions_ensure(
    years_ahead: Annotated[int, typer.Option(min=0, max=20, help="Years after this one to prepare.")] = 2,
    from_year: Annotated[
        int | None, typer.Option(min=1900, max=2200, help="Also create years from this one (imports).")
    ] = None,
) -> None:
    """Create the consultations partitions for this year and the next YEARS_AHEAD (idempotent)."""
    from hims.ops import partitions

    with database_url(load_settings()) as url:
        result = asyncio.run(partitions.ensure(url, years_ahead=years_ahead, from_year=from_year))
    for name in result.created:
        out.print(f"created {name}")
    out.print(f"partitions ready ({len(result.created)} created, {len(result.existing)} already there)")


@db_app.command("verify")
def db_verify() -> None:
    """Check migrations are at head and the live schema equals the models; list every drift."""
    from hims import composition
    from hims.ops import migrate

    settings = load_settings()
    with database_url(settings) as url:
        drift = migrate.verify(url, composition.VERIFY_CHECKS)
    for line in drift.problems:
        typer.echo(f"drift: {line}")
    if not drift.ok:
        raise typer.Exit(1)
    out.print("database verified: migrations at head, schema matches the models")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision (e.g. -1, base, 0001_platform).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to retype the database name.")] = False,
) -> None:
    """Revert migrations to REVISION (destructive: asks to retype the database name)."""
    from sqlalchemy.engine import make_url

    from hims.ops import migrate

    settings = load_settings()
    with database_url(settings) as url:
        name = make_url(url).database or ""
        if not yes:
            if not sys.stdin.isatty():
                console.print("refusing to downgrade without a terminal; pass --yes")
                raise typer.Exit(1)
            typed = typer.prompt(f"This drops data. Retype the database name ({name}) to continue")
            if typed != name:
                console.print("name does not match; nothing changed")
                raise typer.Exit(1)
        after = migrate.downgrade(url, revision)
        out.print(f"database now at {list(after) or 'base'}")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="Short slug, e.g. 'add users'.")],
    rev_id: Annotated[str, typer.Option("--rev-id", help="Revision id, e.g. 0004_identity.")],
    head: Annotated[str, typer.Option(help="Parent revision (for a domain's own branch).")] = "head",
) -> None:
    """Developers: write a migration from the difference between the models and the database."""
    from hims.ops import migrate

    settings = load_settings()
    with database_url(settings) as url:
        path = migrate.revision(url, message=message, rev_id=rev_id, head=head)
    out.print(f"wrote {path}; review it before committing")


@db_app.command("seed")
def db_seed(
    reference_data_only: Annotated[
        bool,
        typer.Option(
            "--reference-data-only",
            help="Load only reference data (facilities, code lists): allowed in staging/production.",
        ),
    ] = False,
    reference_file: Annotated[
        Path | None,
        typer.Option(
            "--reference-file", exists=True, dir_okay=False, help="Facilities and departments (JSON) to load."
        ),
    ] = None,
) -> None:
    """Load idempotent seed data: reference data, and demo data in development and test only."""
    settings = load_settings()
    with database_url(settings) as url:
        report = _seed(settings, url, reference_only=reference_data_only, reference_file=reference_file)
    _print_seed(report)


def _seed(
    settings: Settings, url: str, *, reference_only: bool = False, reference_file: Path | None = None
) -> Any:
    from hims import composition
    from hims.core.db import Database
    from hims.core.logging import configure_logging
    from hims.seed import DemoRefused, seed

    # The steps go through the service functions, which log each event at info; the counts
    # printed afterwards are what a person wants to see here.
    configure_logging("warning", json=False)

    async def run() -> Any:
        db = Database(url, pool_size=2)
        try:
            return await seed(
                db,
                settings,
                composition.SEEDERS,
                reference_only=reference_only,
                reference_file=reference_file,
            )
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except DemoRefused as exc:
        console.print(f"refused: {exc}")
        raise typer.Exit(2) from None


def _print_seed(report: Any) -> None:
    for what, count in report.created.items():
        out.print(f"seeded {what}: {count}")
    for line in report.notes:
        out.print(line)
    if report.logins:
        table = Table("role", "username", "password", title="Demo logins (development only)")
        for role, username, password in report.logins:
            table.add_row(role, username, password)
        out.print(table)


@embedded_app.command("start")
def embedded_start() -> None:
    """Start the embedded cluster and print its URL (it keeps running)."""
    settings = load_settings()
    with database_url(settings, keep_running=True) as url:
        out.print(mask_url(url))


@embedded_app.command("stop")
def embedded_stop() -> None:
    """Stop the embedded cluster cleanly."""
    settings = load_settings()
    EmbeddedPostgres(settings.hims_data_dir.resolve() / "postgres").stop()
    out.print("embedded PostgreSQL stopped")


@embedded_app.command("url")
def embedded_url() -> None:
    """Print the running embedded cluster's DATABASE_URL (with its password, for psql)."""
    settings = load_settings()
    cluster = EmbeddedPostgres(settings.hims_data_dir.resolve() / "postgres")
    if cluster.running_pid() is None:
        console.print("embedded PostgreSQL is not running")
        raise typer.Exit(1)
    out.print(cluster.url(), markup=False)


# ---------------------------------------------------------------- serve / up / worker


def _serve(settings: Settings, url: str, host: str | None, port: int | None, workers: int) -> None:
    import uvicorn

    from hims.app import create_app
    from hims.ops import serving

    os.environ["DATABASE_URL"] = url  # inherited by uvicorn worker processes
    if workers > 1:
        metrics_dir = settings.hims_data_dir.resolve() / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        options: dict[str, Any] = {
            "factory": True,
            "host": host or settings.host,
            "port": port or settings.port,
            "workers": workers,
            # The supervisor restarts a worker that misses its health ping; the default 5 s killed
            # workers still importing on a loaded host (a restart loop exactly when busy).
            "timeout_worker_healthcheck": 30,
            "timeout_graceful_shutdown": 30,
            "log_config": None,
            "proxy_headers": True,
            "server_header": False,
        }
        if serving.reuse_port_available():  # each worker its own socket (hims.ops.serving)
            serving.run_workers(uvicorn.Config("hims.app:create_app", **options))
        else:
            uvicorn.run("hims.app:create_app", **options)
        return
    app = create_app(settings.model_copy(update={"database_url": SecretStr(url)}))
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        timeout_graceful_shutdown=30,
        log_config=None,
        proxy_headers=True,
        server_header=False,
    )


def _exit_cleanly_on_signals() -> None:
    """SIGTERM/SIGINT end the command through SystemExit so `finally` blocks run.

    uvicorn restores these handlers after its graceful shutdown and re-raises the signal it
    caught; without this, SIGTERM's default action would kill the process before the embedded
    PostgreSQL is stopped.
    """

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


HostOpt = Annotated[str | None, typer.Option(help="Interface to bind (default HOST).")]
PortOpt = Annotated[int | None, typer.Option(help="Port (default PORT, 3000).")]
WorkersOpt = Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")]


def serve(host: HostOpt = None, port: PortOpt = None, workers: WorkersOpt = 1) -> None:
    """Run the HTTP server (graceful shutdown: in-flight requests finish, pools close)."""
    settings = load_settings()
    _fail_on_problems(settings)
    _exit_cleanly_on_signals()
    with database_url(settings) as url:
        _serve(settings, url, host, port, workers)


def up(
    host: HostOpt = None,
    port: PortOpt = None,
    workers: WorkersOpt = 1,
    seed: Annotated[
        bool, typer.Option(help="Load seed data (demo data in development and test only).")
    ] = True,
) -> None:
    """Migrate, seed (demo data in development and test, reference data elsewhere), print the demo
    logins and serve: the one-command start."""
    from hims.ops import migrate

    settings = load_settings()
    _fail_on_problems(settings)
    _exit_cleanly_on_signals()
    with database_url(settings) as url:
        with console.status("Migrating…"):
            migrate.upgrade(url)
        _warn_missing_extensions(url)
        _after_migrate(url)
        if seed:
            from hims.seed import DEMO_ENVIRONMENTS

            reference_only = settings.hims_env not in DEMO_ENVIRONMENTS
            with console.status("Loading reference data…" if reference_only else "Seeding demo data…"):
                report = _seed(settings, url, reference_only=reference_only)
            _print_seed(report)
        out.print(
            f"AROCORD-HIMS on http://{host or settings.host}:{port or settings.port}/ (Ctrl-C stops it)"
        )
        _serve(settings, url, host, port, workers)


def worker() -> None:
    """Run the background job queue (Redis-backed)."""
    from hims.ops import worker as worker_module

    settings = load_settings()
    _fail_on_problems(settings)
    if not settings.redis_url:
        console.print("hims worker needs REDIS_URL (the job queue lives in Redis)")
        raise typer.Exit(2)
    with database_url(settings) as url:
        worker_module.run(settings, url)
