"""Document rules: allowed types (declared and sniffed), size limit, checksums, PHI log."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from hims.audit.service import log_part, record
from hims.consultations import service as consultations
from hims.core.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed, field_error
from hims.core.records import Row
from hims.core.security import Actor
from hims.core.storage import FileMissing, Storage
from hims.documents import repository
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

    document: Row
    content: bytes


#: The file a document row points at: no change of a document may change it.
FILE_COLUMNS = ("storage_key", "sha256", "size_bytes", "content_type")


async def upload_document(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    storage: Storage,
    patient_id: uuid.UUID,
    filename: str | None,
    declared_type: str | None,
    content: bytes,
    max_bytes: int,
    title: str | None = None,
    consultation_id: uuid.UUID | None = None,
) -> Row:
    """Check and store a file for a patient (the only way a document comes to exist); the file is
    removed again when the row cannot be written.

    The row is committed by its own statement, so ``conn`` must not be in a transaction: a later
    failure of an enclosing transaction would leave the stored file without its row.
    """
    if conn.is_in_transaction():
        raise RuntimeError("upload_document commits its own row; call it outside a transaction")
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
    await require_patient_record(conn=conn, patient_id=patient_id)
    await _check_consultation(conn, patient_id, consultation_id)
    document_id = uuid.uuid4()
    key = f"documents/{document_id.hex[:2]}/{document_id.hex}"
    now = datetime.now(UTC)
    document = dict.fromkeys(repository.COLUMNS) | {
        "id": document_id,
        "patient_id": patient_id,
        "consultation_id": consultation_id,
        "title": title,
        "filename": safe_filename(filename),
        "content_type": sniffed,
        "size_bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "storage_key": key,
        "uploaded_by": actor.user_id,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    await storage.put(key, content, content_type=sniffed)
    try:
        await repository.insert(conn, actor, [document], [log_part(actor, "create", RESOURCE)])
    except BaseException:
        await storage.delete(key)
        raise
    return document


async def _check_consultation(
    conn: asyncpg.Connection, patient_id: uuid.UUID, consultation_id: uuid.UUID | None
) -> None:
    if consultation_id is None:
        return
    owners = await consultations.consultation_owners(conn=conn, ids=[consultation_id])
    if owners.get(consultation_id) != patient_id:
        raise ValidationFailed(
            errors=[field_error("consultation_id", "No such consultation for this patient.", "not_found")]
        )


async def _load(conn: asyncpg.Connection, document_id: uuid.UUID) -> Row:
    document = (await repository.get_many(conn, [document_id])).get(document_id)
    if document is None or document["deleted_at"] is not None:
        raise NotFound("No document with this id.", code="document_not_found")
    return document


async def load(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Row]:
    """Current rows of these documents (deleted ones too), for a caller about to change them."""
    return await repository.get_many(conn, ids, lock=lock)


async def _log(conn: asyncpg.Connection, actor: Actor, action: str, document: Row) -> None:
    await record(
        conn,
        actor=actor,
        action=action,
        resource_type=RESOURCE,
        accesses=[(document["patient_id"], str(document["id"]))],
    )


async def get_document(*, conn: asyncpg.Connection, actor: Actor, document_id: uuid.UUID) -> Row:
    """A document's metadata (logged as ``read``)."""
    document = await _load(conn, document_id)
    await _log(conn, actor, "read", document)
    return document


async def download_document(
    *, conn: asyncpg.Connection, actor: Actor, storage: Storage, document_id: uuid.UUID
) -> Download:
    """The file, after checking its sha256 against the one stored at upload (409 ``checksum_mismatch``)."""
    document = await _load(conn, document_id)
    try:
        content = await storage.get(document["storage_key"])
    except FileMissing:
        log.error("document_file_missing", document_id=str(document["id"]))
        raise Conflict("The stored file is missing; tell the operator.", code="file_missing") from None
    if hashlib.sha256(content).hexdigest() != document["sha256"]:
        log.error("document_checksum_mismatch", document_id=str(document["id"]))
        raise Conflict(
            "The stored file does not match its checksum (altered or corrupted); tell the operator.",
            code="checksum_mismatch",
        )
    await _log(conn, actor, "download", document)
    return Download(document=document, content=content)


async def list_documents(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    patient_id: uuid.UUID,
    consultation_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Row]:
    """A patient's documents, newest first; one ``search`` PHI row per document."""
    await require_patient_record(conn=conn, patient_id=patient_id)
    documents = await repository.list_for_patient(
        conn, patient_id, consultation_id=consultation_id, limit=limit, offset=offset
    )
    await record(
        conn,
        actor=actor,
        action="search",
        resource_type=RESOURCE,
        accesses=[(d["patient_id"], str(d["id"])) for d in documents] or [(patient_id, None)],
    )
    return documents


async def revise_document(
    *,
    conn: asyncpg.Connection,
    actor: Actor,
    prior: Row,
    changes: Row,
    extra: dict[str, Any] | None = None,
    keep_extra: bool = True,
) -> Row | None:
    """A document's next version (FHIR update): its title, consultation and what the row does not
    hold may change, never its file (422 ``file_immutable``) nor its patient."""
    asked = {name: changes.get(name) for name in FILE_COLUMNS}
    if any(value is not None and value != prior[name] for name, value in asked.items()):
        raise ValidationFailed(
            "The file of a document cannot be changed; upload a new document.",
            errors=[field_error("content", "The file of a document cannot change.", "file_immutable")],
        )
    row = {
        **prior,
        **{
            k: v
            for k, v in changes.items()
            if k in ("title", "consultation_id", "filename") and v is not None
        },
    }
    if changes.get("patient_id") not in (None, prior["patient_id"]):
        raise ValidationFailed(
            errors=[field_error("patient_id", "A document stays with its patient.", "immutable")]
        )
    await _check_consultation(conn, row["patient_id"], row["consultation_id"])
    row.update(
        version=prior["version"] + 1,
        updated_at=datetime.now(UTC),
        deleted_at=None,
        extra=extra if extra is not None or not keep_extra else prior["extra"],
    )
    written = await repository.update(conn, actor, [row], [log_part(actor, "update", RESOURCE)])
    return row if written else None


async def remove_document(*, conn: asyncpg.Connection, actor: Actor, prior: Row) -> Row | None:
    """Soft delete: hidden from lists and downloads; the file is retained (medical-record retention)."""
    now = datetime.now(UTC)
    row = {**prior, "deleted_at": now, "version": prior["version"] + 1, "updated_at": now}
    written = await repository.update(
        conn,
        actor,
        [row],
        [log_part(actor, "delete", RESOURCE)],
        columns=("deleted_at", "version", "updated_at"),
        deleting=True,
    )
    return row if written else None


async def delete_document(*, conn: asyncpg.Connection, actor: Actor, document_id: uuid.UUID) -> None:
    """Soft delete through REST."""
    prior = await _load(conn, document_id)
    if await remove_document(conn=conn, actor=actor, prior=prior) is None:
        raise Conflict("The document changed while deleting; try again.", code="version_mismatch")


async def move_patient_records(
    conn: asyncpg.Connection, actor: Actor, from_id: uuid.UUID, into_id: uuid.UUID
) -> int:
    """Merge mover: a merged patient's documents go to the survivor (files stay where they are)."""
    rows = await repository.of_patient(conn, from_id, lock=True)
    now = datetime.now(UTC)
    moved = [{**r, "patient_id": into_id, "version": r["version"] + 1, "updated_at": now} for r in rows]
    if moved:
        await repository.update(
            conn,
            actor,
            moved,
            [log_part(actor, "merge", RESOURCE)],
            columns=("patient_id", "version", "updated_at"),
        )
    return len(moved)
