"""All SQL of documents."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hims.documents.models import Document


async def get(session: AsyncSession, document_id: uuid.UUID, *, for_update: bool = False) -> Document | None:
    """One document (deleted ones too)."""
    stmt = select(Document).where(Document.id == document_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_for_patient(
    session: AsyncSession,
    patient_id: uuid.UUID,
    *,
    consultation_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> list[Document]:
    """A patient's live documents, newest first."""
    stmt = select(Document).where(Document.patient_id == patient_id, Document.deleted_at.is_(None))
    if consultation_id is not None:
        stmt = stmt.where(Document.consultation_id == consultation_id)
    stmt = stmt.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
    return list((await session.execute(stmt)).scalars())
