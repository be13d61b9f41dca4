"""Moves a merged patient's documents to the surviving patient."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from hims.documents.models import Document
from hims.patients.merge import register_merge_hook


async def move_documents(session: AsyncSession, from_id: uuid.UUID, into_id: uuid.UUID) -> int:
    """Re-point every document of ``from_id`` to ``into_id`` (files stay where they are)."""
    result = await session.execute(
        update(Document)
        .where(Document.patient_id == from_id)
        .values(patient_id=into_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


register_merge_hook(move_documents)
