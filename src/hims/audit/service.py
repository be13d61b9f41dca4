"""Writing the PHI access log in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import driver_connection
from hims.core.security import Actor

#: Every row of one call shares the actor's columns; the per-access columns come as two arrays,
#: so any number of rows is one prepared statement and one round trip on the session's
#: connection (the ORM bulk insert cost about 8% of a FHIR request's CPU).
_COLUMNS = (
    "INSERT INTO phi_access_log (user_id, username, patient_id, action, resource_type, resource_id, "
    "ip_address, request_id, channel, outcome) "
)
_INSERT = (
    _COLUMNS + "SELECT $1::uuid, $2::varchar, a.patient_id, $3::varchar, $4::varchar, a.resource_id, "
    "$5::inet, $6::varchar, $7::varchar, $8::varchar "
    "FROM unnest($9::uuid[], $10::varchar[]) WITH ORDINALITY AS a(patient_id, resource_id, n) ORDER BY a.n"
)


def insert_per_row(source: str, first: int, *, patient_id: str, resource_id: str) -> str:
    """SQL logging one successful access per row of ``source``, to embed in the statement that
    reads those rows (a CTE), so the read and its log row commit together as one statement.

    ``patient_id`` and ``resource_id`` are SQL expressions over ``source``; the actor's columns
    are the parameters ``$first`` .. ``$first + 6``, in the order of `actor_params`.
    """
    p = [f"${first + i}" for i in range(7)]
    # The caller's fixed SQL fragments and parameter numbers; every value is a bound parameter.
    return (
        f"{_COLUMNS}SELECT {p[0]}::uuid, {p[1]}::varchar, {patient_id}, {p[2]}::varchar, "  # noqa: S608
        f"{p[3]}::varchar, {resource_id}, {p[4]}::inet, {p[5]}::varchar, {p[6]}::varchar, 'success' "
        f"FROM {source}"
    )


def actor_params(actor: Actor, action: str, resource_type: str) -> list[object]:
    """The parameters `insert_per_row` refers to (and `_INSERT`'s first seven)."""
    return [
        actor.user_id,
        actor.username,
        action,
        resource_type,
        actor.client_ip,
        actor.request_id,
        actor.channel,
    ]


async def record_phi_access(
    *,
    session: AsyncSession,
    actor: Actor,
    action: str,
    resource_type: str,
    accesses: Iterable[tuple[uuid.UUID | None, str | None]],
    outcome: str = "success",
) -> int:
    """Log one row per (patient_id, resource_id) in ``accesses``; returns how many were written.

    Call it from the service function that reads or writes the data, with the same session,
    so the log commits or rolls back together with the access.
    """
    items = list(accesses)
    if not items:
        return 0
    return await log_phi_access(
        await driver_connection(session),
        actor=actor,
        action=action,
        resource_type=resource_type,
        accesses=items,
        outcome=outcome,
    )


async def log_phi_access(
    conn: asyncpg.Connection,
    *,
    actor: Actor,
    action: str,
    resource_type: str,
    accesses: Iterable[tuple[uuid.UUID | None, str | None]],
    outcome: str = "success",
) -> int:
    """`record_phi_access` on a driver connection, inside the transaction of the access."""
    patients: list[uuid.UUID | None] = []
    resources: list[str | None] = []
    for patient_id, resource_id in accesses:
        patients.append(patient_id)
        resources.append(resource_id)
    if patients:
        await conn.execute(_INSERT, *actor_params(actor, action, resource_type), outcome, patients, resources)
    return len(patients)
