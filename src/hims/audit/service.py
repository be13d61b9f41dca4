"""The one writer of the PHI access log: every row, whatever the path, is built here.

A row names the patient (``patient_id``), the record (``resource_type``, a FHIR type name such as
``Patient`` or ``Encounter``, and ``resource_id``, the record's id alone), the user, the action,
the outcome (success, denied, error) and the channel the actor came through (rest, fhir, bundle,
import, cli, ui, job). Callers log in the same transaction as the access: inside the statement
that reads or writes (`log_part`, `insert_per_row`) or right after it on the same connection
(`record`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit import repository
from hims.core.db import driver_connection
from hims.core.records import Part
from hims.core.security import Actor

Outcome = Literal["success", "denied", "error"]

_COLUMNS = (
    "INSERT INTO phi_access_log (user_id, username, patient_id, action, resource_type, resource_id, "
    "ip_address, request_id, channel, outcome) "
)
#: Every row of one call shares the actor's columns; the per-access columns come as two arrays,
#: so any number of rows is one prepared statement and one round trip.
_INSERT = (
    _COLUMNS + "SELECT $1::uuid, $2::varchar, a.patient_id, $3::varchar, $4::varchar, a.resource_id, "
    "$5::inet, $6::varchar, $7::varchar, $8::varchar "
    "FROM unnest($9::uuid[], $10::varchar[]) WITH ORDINALITY AS a(patient_id, resource_id, n) ORDER BY a.n"
)


def insert_per_row(
    source: str,
    first: int,
    *,
    patient_id: str,
    resource_id: str,
    action: str | None = None,
    resource_type: str | None = None,
) -> str:
    """SQL logging one successful access per row of ``source``, to embed in the statement that
    reads or writes those rows (a CTE), so the access and its log row commit together.

    ``patient_id`` and ``resource_id`` are SQL expressions over ``source``, and so are ``action``
    and ``resource_type`` when given (else they are parameters). The parameters start at
    ``$first``, in the order of `actor_params` called with the same two left out.
    """
    p = [f"${first + i}" for i in range(7)]
    action_sql = action or f"{p[2]}::varchar"
    type_sql = resource_type or f"{p[3] if action is None else p[2]}::varchar"
    rest = p[2 + (action is None) + (resource_type is None) :]
    # The caller's fixed SQL fragments and parameter numbers; every value is a bound parameter.
    return (
        f"{_COLUMNS}SELECT {p[0]}::uuid, {p[1]}::varchar, {patient_id}, {action_sql}, "  # noqa: S608
        f"{type_sql}, {resource_id}, {rest[0]}::inet, {rest[1]}::varchar, {rest[2]}::varchar, 'success' "
        f"FROM {source}"
    )


def actor_params(actor: Actor, action: str | None, resource_type: str | None) -> list[object]:
    """The parameters `insert_per_row` refers to (and `_INSERT`'s first seven); an action or type
    given as None is left out (the log takes it from the rows)."""
    named = [v for v in (action, resource_type) if v is not None]
    return [actor.user_id, actor.username, *named, actor.client_ip, actor.request_id, actor.channel]


def log_part(
    actor: Actor,
    action: str,
    resource_type: str,
    *,
    source: str = "w",
    patient_id: str = "w.patient_id",
    resource_id: str = "w.id::text",
    name: str = "logged",
    source_args: Sequence[object] = (),
) -> Part:
    """A CTE of a record write (`hims.core.records.write`) logging one access per row of ``source``.

    By default the rows of ``w``, the rows written: a row that was not written (an optimistic
    update that lost its race) is not logged. ``source`` may take parameters of its own,
    ``source_args``, written ``{0}``, ``{1}``... in it (or in ``patient_id`` / ``resource_id``).
    """
    params = [*actor_params(actor, action, resource_type), *source_args]

    def sql(first: int) -> str:
        own = [f"${first + 7 + i}" for i in range(len(source_args))]
        return insert_per_row(
            source.format(*own),
            first,
            patient_id=patient_id.format(*own),
            resource_id=resource_id.format(*own),
        )

    return Part(name, sql, params, ("log", source, patient_id, resource_id, len(source_args)))


async def record(
    conn: asyncpg.Connection,
    *,
    actor: Actor,
    action: str,
    resource_type: str,
    accesses: Iterable[tuple[uuid.UUID | None, str | None]],
    outcome: Outcome = "success",
) -> int:
    """Log one row per (patient_id, resource_id) in ``accesses`` on ``conn`` (in the caller's
    transaction); returns how many were written."""
    patients: list[uuid.UUID | None] = []
    resources: list[str | None] = []
    for patient_id, resource_id in accesses:
        patients.append(patient_id)
        resources.append(resource_id)
    if patients:
        await conn.execute(_INSERT, *actor_params(actor, action, resource_type), outcome, patients, resources)
    return len(patients)


async def record_phi_access(
    *,
    session: AsyncSession,
    actor: Actor,
    action: str,
    resource_type: str,
    accesses: Iterable[tuple[uuid.UUID | None, str | None]],
    outcome: Outcome = "success",
) -> int:
    """`record` for callers holding an ORM session (same transaction as the session's work)."""
    items = list(accesses)
    if not items:
        return 0
    conn = await driver_connection(session)
    return await record(
        conn, actor=actor, action=action, resource_type=resource_type, accesses=items, outcome=outcome
    )


# ------------------------------------------------------------------------------ reading the log

#: A filter clause of the log readers (`hims.audit.repository`): (kind, value).
Clause = repository.Clause
TimeRange = repository.TimeRange


async def log_entry(conn: asyncpg.Connection, log_id: int) -> dict[str, Any] | None:
    """One log row by id (for compliance readers: reading the log is not PHI access)."""
    return await repository.get(conn, log_id)


async def log_entries(conn: asyncpg.Connection, log_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Log rows by id (missing ids are absent)."""
    return await repository.get_many(conn, log_ids)


async def count_entries(conn: asyncpg.Connection, groups: Sequence[Sequence[Clause]]) -> int:
    """How many rows match (clauses OR'd within a group, groups AND'ed)."""
    return await repository.count(conn, groups)


async def page_entries(
    conn: asyncpg.Connection,
    groups: Sequence[Sequence[Clause]],
    *,
    descending: bool,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A page of matching rows in (occurred_at, id) order after the keyset ``after``."""
    return await repository.page(conn, groups, descending=descending, after=after, limit=limit)
