"""Loading FHIR data sets: transaction Bundles (.json[.gz]) and Bulk NDJSON files (.ndjson[.gz]).

Synthea repeats the same Organizations and Practitioners in every patient bundle; their POSTs are
turned into conditional creates on their identifier so each is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import gzip
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from hims.consultations import service as consultations
from hims.core.db import Database
from hims.core.errors import is_retryable_conflict
from hims.core.security import Actor
from hims.fhir import bundles

DEDUPLICATED_TYPES = ("Organization", "Practitioner", "Location")
#: NDJSON files load in this order so conditional references find their targets.
LOAD_ORDER = ("Organization", "Location", "Practitioner", "PractitionerRole", "Patient", "Encounter")
NDJSON_BATCH = 500


class NotFhir(ValueError):
    """A file that is not FHIR data (skipped, not failed)."""


@dataclass
class ImportStats:
    """What an import did."""

    files: int = 0
    resources: int = 0
    errors: int = 0
    skipped: int = 0


def discover(paths: list[Path]) -> list[Path]:
    """Every importable file under ``paths`` (directories are walked, sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and _kind(p)))
        elif _kind(path):
            found.append(path)
    return sorted(found, key=_priority)


def _priority(path: Path) -> tuple[int, str]:
    stem = path.name.split(".")[0]
    return (LOAD_ORDER.index(stem) if stem in LOAD_ORDER else len(LOAD_ORDER), str(path))


def _kind(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".ndjson"):
        return "ndjson"
    if name.endswith(".json"):
        return "bundle"
    return None


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def deduplicate(entries: list[dict[str, Any]]) -> None:
    """Make POSTs of shared resources conditional on their first identifier."""
    for entry in entries:
        resource = entry.get("resource") or {}
        request = entry.get("request") or {}
        if resource.get("resourceType") not in DEDUPLICATED_TYPES or request.get("method") != "POST":
            continue
        if request.get("ifNoneExist"):
            continue
        for ident in resource.get("identifier") or []:
            if ident.get("system") and ident.get("value"):
                request["ifNoneExist"] = f"identifier={ident['system']}|{ident['value']}"
                break


def _ndjson_batches(data: bytes) -> Iterator[list[bytes]]:
    """The non-blank lines of an NDJSON file, NDJSON_BATCH at a time."""
    batch: list[bytes] = []
    for line in data.splitlines():
        if not line.strip():
            continue
        batch.append(line)
        if len(batch) >= NDJSON_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _ndjson_entries(lines: list[bytes]) -> list[dict[str, Any]]:
    """Transaction entries for NDJSON lines: PUT to the resource's id, POST when it has none."""
    entries = []
    for line in lines:
        resource = orjson.loads(line)
        rtype, rid = resource.get("resourceType"), resource.get("id")
        request = {"method": "PUT", "url": f"{rtype}/{rid}"} if rid else {"method": "POST", "url": str(rtype)}
        entries.append({"resource": resource, "request": request})
    return entries


def _bundle_entries(data: bytes) -> tuple[str, list[dict[str, Any]]]:
    """(kind, entries) of a Bundle file, shared resources made conditional."""
    kind, entries = bundles.parse_bundle(orjson.loads(data))
    deduplicate(entries)
    return kind, entries


def encounter_years(entries: list[dict[str, Any]]) -> set[int]:
    """The years Encounters in ``entries`` start in (their consultations' partitions)."""
    years = set()
    for entry in entries:
        resource = entry.get("resource") or {}
        start = (
            (resource.get("period") or {}).get("start")
            if resource.get("resourceType") == "Encounter"
            else None
        )
        if isinstance(start, str) and start[:4].isdigit():
            years.add(int(start[:4]))
    return years


def _file_years(path: Path) -> set[int]:
    """The Encounter years of one file (none when it cannot be read: its import reports why)."""
    try:
        data = _read(path)
        if _kind(path) == "ndjson":
            lines = [line for line in data.splitlines() if b'"Encounter"' in line]
            return encounter_years([{"resource": orjson.loads(line)} for line in lines])
        return encounter_years(orjson.loads(data).get("entry") or [])
    except (OSError, ValueError, AttributeError):
        return set()


async def ensure_partitions(db: Database, entries: list[dict[str, Any]], known: set[int]) -> None:
    """Give historical Encounters a consultations partition before their transaction (an import is
    an operator's command, the only place partitions are created; see hims.consultations.partitions)."""
    await _ensure_years(db, encounter_years(entries), known)


async def _ensure_years(db: Database, years: set[int], known: set[int]) -> None:
    """The consultations partitions of ``years`` not in ``known`` (then added to it)."""
    years = years - known
    if years:

        async def create() -> None:
            async with db.engine.begin() as conn:
                await consultations.prepare_years(conn, years)

        await _retrying(create)
        known |= years


async def ensure_file_partitions(db: Database, files: list[Path], known: set[int] | None = None) -> set[int]:
    """The consultations partitions of every Encounter year in ``files`` (``known``: years already
    checked); returns those years. Each new partition costs about 20 ms of DDL (PostgreSQL 15
    syncs every index it builds to disk), once in a database's life."""
    years: set[int] = set()
    for path in files:
        years |= _file_years(path)
    await _ensure_years(db, years, set() if known is None else known)
    return years


async def import_file(
    db: Database,
    path: Path,
    *,
    actor: Actor,
    partition_years: set[int] | None = None,
    create_options: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Import one file, each bundle / NDJSON batch in its own transaction; (resources, last response).

    Consultation partitions for the years of its Encounters are created first (``partition_years``
    remembers the years already checked across files). ``create_options`` apply to every create
    (``allow_duplicate``: register patients even when they look like registered ones)."""
    known = set() if partition_years is None else partition_years
    data = _read(path)
    if _kind(path) == "ndjson":
        first = next((line for line in data.splitlines() if line.strip()), b"{}")
        if "resourceType" not in orjson.loads(first):
            raise NotFhir(f"{path.name} holds no FHIR resources (e.g. a Bulk Data log); skipped")
        total = 0
        for lines in _ndjson_batches(data):
            batch = _ndjson_entries(lines)
            await ensure_partitions(db, batch, known)
            # Bulk files reference each other across files (and sometimes into files that are absent),
            # so referential integrity is not enforced for NDJSON loads.
            await _in_transaction(
                db,
                actor,
                "transaction",
                batch,
                functools.partial(_ndjson_entries, lines),
                check_references=False,
                create_options=create_options,
            )
            total += len(batch)
        return total, None
    kind, entries = _bundle_entries(data)
    await ensure_partitions(db, entries, known)
    return len(entries), await _in_transaction(
        db, actor, kind, entries, lambda: _bundle_entries(data)[1], create_options=create_options
    )


#: Attempts of a transaction that collided with a concurrent import (a deadlock PostgreSQL broke).
ATTEMPTS = 3

T = TypeVar("T")


async def _retrying(run: Callable[[], Awaitable[T]]) -> T:
    """``run()`` again (up to ATTEMPTS) when its transaction lost a deadlock or a serialization
    conflict to a concurrent import: it was rolled back whole, so running it again is safe."""
    attempt = 1
    while True:
        try:
            return await run()
        except Exception as exc:
            if attempt >= ATTEMPTS or not is_retryable_conflict(exc):
                raise
            attempt += 1


async def _in_transaction(
    db: Database,
    actor: Actor,
    kind: str,
    entries: list[dict[str, Any]],
    parse_again: Callable[[], list[dict[str, Any]]],
    *,
    check_references: bool = True,
    create_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One bundle in its own transaction (retried after a collision).

    The transaction consumes the entries (changes them rather than copy every resource first),
    so an attempt after a collision works on ``parse_again()``'s."""
    unused = [entries]

    async def run() -> dict[str, Any]:
        todo = unused.pop() if unused else parse_again()
        async with db.transaction() as session:
            if kind == "transaction":
                return await bundles.transaction(
                    session=session,
                    actor=actor,
                    entries=todo,
                    base_url="",
                    check_references=check_references,
                    consume=True,
                    create_options=create_options,
                )
            return await bundles.batch(
                session=session, actor=actor, entries=todo, base_url="", create_options=create_options
            )

    return await _retrying(run)


async def import_paths(
    db: Database,
    paths: list[Path],
    *,
    actor: Actor,
    on_file: Callable[[Path, int, str | None], None] | None = None,
    jobs: int = 1,
    create_options: dict[str, Any] | None = None,
) -> ImportStats:
    """Import every file; a failing file is reported and skipped (its transaction rolled back).

    ``jobs`` files are in flight at once, each in its own transactions on its own connection, so
    one file's Python work overlaps another's database work. Files load in `LOAD_ORDER` groups
    (NDJSON Organizations before Patients before Encounters...), one group after the other;
    concurrent bundles sharing Organizations and Practitioners are safe (conditional-create
    locks, deadlock retries).
    """
    from hims.core.errors import HimsError

    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    stats = ImportStats()
    partition_years: set[int] = set()

    async def one(path: Path) -> None:
        try:
            count, _ = await import_file(
                db, path, actor=actor, partition_years=partition_years, create_options=create_options
            )
        except NotFhir as exc:
            stats.skipped += 1
            if on_file:
                on_file(path, 0, f"skipped: {exc}")
            return
        except (HimsError, ValueError, orjson.JSONDecodeError) as exc:
            stats.errors += 1
            detail = exc.detail if isinstance(exc, HimsError) else str(exc)
            if on_file:
                on_file(path, 0, detail)
            return
        stats.files += 1
        stats.resources += count
        if on_file:
            on_file(path, count, None)

    async def worker(queue: list[Path]) -> None:
        while queue:
            await one(queue.pop(0))

    files = discover(paths)
    with _long_lived_objects_frozen():
        if jobs > 1:
            # A partition created while other files' transactions write consultations waits for
            # them all and stalls every writer behind it (it locks consultations and patients):
            # create every year's partition before the files run side by side.
            await ensure_file_partitions(db, files, partition_years)
        for _, group in itertools.groupby(files, key=lambda p: _priority(p)[0]):
            queue = list(group)
            if jobs > 1:  # largest first: the last file left is a small one, so no job waits long
                queue.sort(key=lambda p: -p.stat().st_size)
            await asyncio.gather(*(worker(queue) for _ in range(min(jobs, len(queue)))))
    return stats


#: The imports running in this process (the last one to end unfreezes; see below).
_RUNNING: list[object] = []


@contextlib.contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects that exist before the import starts.

    An import allocates millions of short-lived dicts, lists and tuples, and every full collection
    they set off traversed the loaded application too (modules, models, ORM registries: ~140k
    objects), a fifth of the import's CPU. `gc.freeze` moves those out of the collector's view
    until the last import running in the process ends; the import's own garbage is collected as
    before."""
    token = object()
    if not _RUNNING:
        gc.freeze()
    _RUNNING.append(token)
    try:
        yield
    finally:
        _RUNNING.remove(token)
        if not _RUNNING:
            gc.unfreeze()
