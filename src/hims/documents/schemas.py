"""Document payloads (metadata only; content travels as the file itself)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DocumentRead(BaseModel):
    """A document's metadata."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    consultation_id: uuid.UUID | None
    title: str | None
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
