"""Writing the PHI access log in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit.models import PhiAccessLog
from hims.core.security import Actor


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
    rows = [
        {
            "user_id": actor.user_id,
            "username": actor.username,
            "patient_id": patient_id,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "ip_address": actor.client_ip,
            "request_id": actor.request_id,
            "channel": actor.channel,
            "outcome": outcome,
        }
        for patient_id, resource_id in accesses
    ]
    if rows:
        await session.execute(insert(PhiAccessLog), rows)
    return len(rows)
