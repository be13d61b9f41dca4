"""`/api/v1/patients/{id}/documents` and `/api/v1/documents/{id}`: upload, list, download, delete."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from hims.core.deps import ConnDep, SettingsDep
from hims.core.security import Actor, require
from hims.core.storage import Storage
from hims.documents import service
from hims.documents.schemas import DocumentRead

router = APIRouter(prefix="/api/v1", tags=["documents"])

Read = Annotated[Actor, require("clinical:read")]
Write = Annotated[Actor, require("clinical:write")]


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


@router.post("/patients/{patient_id}/documents", status_code=201, response_model=DocumentRead)
async def upload(
    patient_id: uuid.UUID,
    request: Request,
    response: Response,
    settings: SettingsDep,
    actor: Write,
    conn: ConnDep,
    file: Annotated[UploadFile, File(description="The document (PDF, PNG, JPEG, plain text, DICOM)")],
    title: Annotated[str | None, Form(max_length=200)] = None,
    consultation_id: Annotated[uuid.UUID | None, Form()] = None,
) -> DocumentRead:
    """Attach a file to a patient (and optionally a consultation)."""
    # Read one byte past the limit so an oversized file is refused without holding all of it.
    content = await file.read(settings.document_max_bytes + 1)
    document = await service.upload_document(
        conn=conn,
        actor=actor,
        storage=_storage(request),
        patient_id=patient_id,
        filename=file.filename,
        declared_type=file.content_type,
        content=content,
        max_bytes=settings.document_max_bytes,
        title=title,
        consultation_id=consultation_id,
    )
    response.headers["Location"] = f"{router.prefix}/documents/{document['id']}"
    return DocumentRead.model_validate(document)


@router.get("/patients/{patient_id}/documents", response_model=list[DocumentRead])
async def list_documents(
    patient_id: uuid.UUID,
    actor: Read,
    conn: ConnDep,
    consultation_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DocumentRead]:
    """A patient's documents, newest first."""
    rows = await service.list_documents(
        conn=conn,
        actor=actor,
        patient_id=patient_id,
        consultation_id=consultation_id,
        limit=limit,
        offset=offset,
    )
    return [DocumentRead.model_validate(d) for d in rows]


@router.get("/documents/{document_id}", response_model=DocumentRead)
async def read_document(document_id: uuid.UUID, actor: Read, conn: ConnDep) -> DocumentRead:
    """A document's metadata."""
    return DocumentRead.model_validate(
        await service.get_document(conn=conn, actor=actor, document_id=document_id)
    )


@router.get("/documents/{document_id}/content", response_class=Response)
async def download(document_id: uuid.UUID, request: Request, actor: Read, conn: ConnDep) -> Response:
    """The file, checked against its sha256 first."""
    result = await service.download_document(
        conn=conn, actor=actor, storage=_storage(request), document_id=document_id
    )
    document = result.document
    return Response(
        result.content,
        media_type=document["content_type"],
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(document['filename'])}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Digest": f"sha-256={document['sha256']}",
        },
    )


@router.delete("/documents/{document_id}", status_code=204)
async def delete_document(document_id: uuid.UUID, actor: Write, conn: ConnDep) -> Response:
    """Remove a document from the record (the file is retained)."""
    await service.delete_document(conn=conn, actor=actor, document_id=document_id)
    return Response(status_code=204)
