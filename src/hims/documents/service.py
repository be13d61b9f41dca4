"""Document rules: allowed types (declared and sniffed), size limit, checksums, PHI log."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hims.audit.service import record_phi_access
from hims.core.db import driver_connection
from hims.core.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed, field_error
from hims.core.security import Actor
from hims.core.storage import FileMissing, Storage, discard_on_rollback
from hims.documents import repository
from hims.documents.models import Document
from hims.patients.service import require_patient_record

log = structlog.get_logger("hims.documents")

RESOURCE = "DocumentReference"

#: Content types we accept; each must also be what the bytes say they are.
ALLOWED_TYPES = {
    "application/pdf": "PDF",
    "image/png": "PNG image",
    "image/jpeg": "JPEG image",
    "text/plain": "plain text (UTF-8)",
    "application/dicom": "DICOM (Part 10 file)",
}
_GENERIC = {"", "application/octet-stream"}


def sniff(data: bytes) -> str | None:
    """The allowed content type the bytes look like, or None."""
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "application/dicom"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or any(unicodedata.category(c) == "Cc" and c not in "\t\n\r\f" for c in text[:4096]):
        return None
    return "text/plain"


def safe_filename(name: str | None) -> str:
    """The file's base name without paths or control characters (never empty)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip().strip(".")
    return base[:255] or "document"


@dataclass
class Download:
    """A verified file ready to send."""

    document: Document
    content: bytes


async def upload_document(
    *,
    session: AsyncSession,
    actor: Actor,
    storage: Storage,
    patient_id: uuid.UUID,
    filename: str | None,
    declared_type: str | None,
    content: bytes,
    max_bytes: int,
    title: str | None = None,
    consultation_id: uuid.UUID | None = None,
) -> Document:
    """Check and store a file for a patient; the file is removed again if the transaction fails."""
    if len(content) > max_bytes:
        raise PayloadTooLarge(
            f"The file is larger than the limit of {max_bytes} bytes.",
            code="file_too_large",
            errors=[field_error("file", f"At most {max_bytes} bytes.", "too_large")],
            extra={"max_bytes": max_bytes},
        )
    if not content:
        raise ValidationFailed(errors=[field_error("file", "The file is empty.", "empty")])
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in _GENERIC and declared not in ALLOWED_TYPES:
        raise ValidationFailed(
            errors=[
                field_error(
                    "file",
                    f"{declared} is not allowed; send one of {', '.join(ALLOWED_TYPES)}.",
                    "type_not_allowed",
                )
            ]
        )
    sniffed = sniff(content)
    if sniffed is None:
        raise ValidationFailed(
            errors=[
                field_error(
                    "file", f"The content is not one of {', '.join(ALLOWED_TYPES)}.", "type_not_allowed"
                )
            ]
        )
    if declared not in _GENERIC and declared != sniffed:
        raise ValidationFailed(
            errors=[
                field_error("file", f"Declared {declared} but the content is {sniffed}.", "content_mismatch")
            ]
        )
    await require_patient_record(conn=await driver_connection(session), patient_id=patient_id)
    document_id = uuid.uuid4()
    key = f"documents/{document_id.hex[:2]}/{document_id.hex}"
    document = Document(
        id=document_id,
        patient_id=patient_id,
        consultation_id=consultation_id,
        title=title,
        filename=safe_filename(filename),
        content_type=sniffed,
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        storage_key=key,
        uploaded_by=actor.user_id,
    )
    await storage.put(key, content, content_type=sniffed)
    discard_on_rollback(session, storage, key)
    session.add(document)
    await session.flush()
    await session.refresh(document)
    await record_phi_access(
        session=session,
        actor=actor,
        action="create",
        resource_type=RESOURCE,
        accesses=[(patient_id, str(document_id))],
    )
    return document


async def _load(session: AsyncSession, document_id: uuid.UUID, *, for_update: bool = False) -> Document:
    document = await repository.get(session, document_id, for_update=for_update)
    if document is None or document.deleted_at is not None:
        raise NotFound("No document with this id.", code="document_not_found")
    return document


async def get_document(*, session: AsyncSession, actor: Actor, document_id: uuid.UUID) -> Document:
    """A document's metadata (logged as ``read``)."""
    document = await _load(session, document_id)
    await record_phi_access(
        session=session,
        actor=actor,
        action="read",
        resource_type=RESOURCE,
        accesses=[(document.patient_id, str(document.id))],
    )
    return document


async def download_document(
    *, session: AsyncSession, actor: Actor, storage: Storage, document_id: uuid.UUID
) -> Download:
    """The file, after checking its sha256 against the one stored at upload (409 ``checksum_mismatch``)."""
    document = await _load(session, document_id)
    try:
        content = await storage.get(document.storage_key)
    except FileMissing:
        log.error("document_file_missing", document_id=str(document.id))
        raise Conflict("The stored file is missing; tell the operator.", code="file_missing") from None
    if hashlib.sha256(content).hexdigest() != document.sha256:
        log.error("document_checksum_mismatch", document_id=str(document.id))
        raise Conflict(
            "The stored file does not match its checksum (altered or corrupted); tell the operator.",
            code="checksum_mismatch",
        )
    await record_phi_access(
        session=session,
        actor=actor,
        action="download",
        resource_type=RESOURCE,
        accesses=[(document.patient_id, str(document.id))],
    )
    return Download(document=document, content=content)


async def list_documents(
    *,
    session: AsyncSession,
    actor: Actor,
    patient_id: uuid.UUID,
    consultation_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Document]:
    """A patient's documents, newest first; one ``search`` PHI row per document."""
    await require_patient_record(conn=await driver_connection(session), patient_id=patient_id)
    documents = await repository.list_for_patient(
        session, patient_id, consultation_id=consultation_id, limit=limit, offset=offset
    )
    await record_phi_access(
        session=session,
        actor=actor,
        action="search",
        resource_type=RESOURCE,
        accesses=[(d.patient_id, str(d.id)) for d in documents] or [(patient_id, None)],
    )
    return documents


async def delete_document(*, session: AsyncSession, actor: Actor, document_id: uuid.UUID) -> None:
    """Soft delete: hidden from lists and downloads; the file is retained (medical-record retention)."""
    document = await _load(session, document_id, for_update=True)
    document.deleted_at = datetime.now(UTC)
    await session.flush()
    await record_phi_access(
        session=session,
        actor=actor,
        action="delete",
        resource_type=RESOURCE,
        accesses=[(document.patient_id, str(document.id))],
    )
