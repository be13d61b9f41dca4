from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import asyncpg
import pytest

from hims.core.security import Actor
from hims.core.storage import LocalStorage, check_key
from hims.documents import service
from tests.conftest import make_settings, serve_in_process
from tests.patients.factories import auth_headers, make_patient
from tests.support import count_rows as count
from tests.support import phi_rows

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
DICOM = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"


def _files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_upload_list_download_delete(client, settings, database_url, tmp_path) -> None:
    headers = auth_headers(settings, "nurse")
    patient = await make_patient(client, settings)
    consultation = await client.post(
        f"/api/v1/patients/{patient['id']}/consultations",
        json={"reason": "follow-up"},
        headers=auth_headers(settings, "physician"),
    )
    consultation_id = consultation.json()["id"]
    upload = await client.post(
        f"/api/v1/patients/{patient['id']}/documents",
        files={"file": ("../../etc/scan.pdf", PDF, "application/pdf")},
        data={"title": "Discharge letter", "consultation_id": consultation_id},
        headers=headers,
    )
    assert upload.status_code == 201, upload.text
    document = upload.json()
    assert document["filename"] == "scan.pdf"
    assert document["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert document["size_bytes"] == len(PDF)
    assert document["consultation_id"] == consultation_id
    assert upload.headers["Location"] == f"/api/v1/documents/{document['id']}"
    [stored] = _files(tmp_path)
    assert stored.read_bytes() == PDF

    listed = await client.get(f"/api/v1/patients/{patient['id']}/documents", headers=headers)
    assert [d["id"] for d in listed.json()] == [document["id"]]
    by_consultation = await client.get(
        f"/api/v1/patients/{patient['id']}/documents",
        params={"consultation_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert by_consultation.json() == []
    meta = await client.get(f"/api/v1/documents/{document['id']}", headers=headers)
    assert meta.json()["title"] == "Discharge letter"
    content = await client.get(f"/api/v1/documents/{document['id']}/content", headers=headers)
    assert content.status_code == 200
    assert content.content == PDF
    assert content.headers["content-type"] == "application/pdf"
    assert "attachment" in content.headers["content-disposition"]

    assert (await client.delete(f"/api/v1/documents/{document['id']}", headers=headers)).status_code == 204
    assert (await client.get(f"/api/v1/documents/{document['id']}", headers=headers)).status_code == 404
    assert (await client.get(f"/api/v1/patients/{patient['id']}/documents", headers=headers)).json() == []
    actions = [r["action"] for r in await phi_rows(database_url, resource_type="DocumentReference")]
    assert actions == ["create", "search", "search", "read", "download", "delete", "search"]
    assert (
        await client.get(
            f"/api/v1/documents/{document['id']}", headers=auth_headers(settings, "receptionist")
        )
    ).status_code == 403


@pytest.mark.parametrize(
    ("name", "content", "declared", "status", "code"),
    [
        ("a.exe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", "application/x-msdownload", 422, "type_not_allowed"),
        ("a.pdf", PNG, "application/pdf", 422, "content_mismatch"),
        ("a.bin", b"\x00\x01\x02\xff\xfe", "application/octet-stream", 422, "type_not_allowed"),
        ("a.html", b"<html><script>alert(1)</script></html>", "text/html", 422, "type_not_allowed"),
        ("empty.txt", b"", "text/plain", 422, "empty"),
    ],
)
async def test_disallowed_or_disguised_files_are_422(
    client, settings, database_url, tmp_path, name, content, declared, status, code
):
    patient = await make_patient(client, settings)
    response = await client.post(
        f"/api/v1/patients/{patient['id']}/documents",
        files={"file": (name, content, declared)},
        headers=auth_headers(settings, "nurse"),
    )
    assert response.status_code == status, response.text
    assert response.json()["errors"][0] == {
        "field": "file",
        "message": response.json()["errors"][0]["message"],
        "code": code,
    }
    assert await count(database_url, "documents") == 0
    assert _files(tmp_path) == []


async def test_allowed_types_are_sniffed(client, settings) -> None:
    patient = await make_patient(client, settings)
    for name, content, declared, expected in (
        ("x.png", PNG, "image/png", "image/png"),
        ("x.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg", "image/jpeg"),
        ("x.dcm", DICOM, "application/octet-stream", "application/dicom"),
        ("notes.txt", "Blood pressure 120/80 — stable".encode(), "text/plain; charset=utf-8", "text/plain"),
    ):
        response = await client.post(
            f"/api/v1/patients/{patient['id']}/documents",
            files={"file": (name, content, declared)},
            headers=auth_headers(settings, "physician"),
        )
        assert response.status_code == 201, response.text
        assert response.json()["content_type"] == expected


async def test_size_limit_is_413_and_nothing_is_kept(database_url, redis_url, tmp_path) -> None:
    settings = make_settings(database_url, redis_url, hims_data_dir=tmp_path, document_max_bytes=1024)
    async with serve_in_process(settings) as http:
        patient = await make_patient(http, settings)
        response = await http.post(
            f"/api/v1/patients/{patient['id']}/documents",
            files={"file": ("big.txt", b"a" * 1025, "text/plain")},
            headers=auth_headers(settings, "nurse"),
        )
        assert response.status_code == 413
        assert response.json()["code"] == "file_too_large"
        assert response.json()["errors"][0]["field"] == "file"
        ok = await http.post(
            f"/api/v1/patients/{patient['id']}/documents",
            files={"file": ("fits.txt", b"a" * 1024, "text/plain")},
            headers=auth_headers(settings, "nurse"),
        )
        assert ok.status_code == 201
    assert await count(database_url, "documents") == 1


async def test_tampered_file_is_a_checksum_problem(client, settings, tmp_path) -> None:
    headers = auth_headers(settings, "nurse")
    patient = await make_patient(client, settings)
    document = (
        await client.post(
            f"/api/v1/patients/{patient['id']}/documents",
            files={"file": ("a.txt", b"original", "text/plain")},
            headers=headers,
        )
    ).json()
    [stored] = _files(tmp_path)
    stored.write_bytes(b"tampered")
    response = await client.get(f"/api/v1/documents/{document['id']}/content", headers=headers)
    assert response.status_code == 409
    assert response.json()["code"] == "checksum_mismatch"
    stored.unlink()
    missing = await client.get(f"/api/v1/documents/{document['id']}/content", headers=headers)
    assert missing.status_code == 409
    assert missing.json()["code"] == "file_missing"


async def test_file_is_removed_when_the_transaction_fails(
    client, settings, db, database_url, tmp_path
) -> None:
    patient = await make_patient(client, settings)
    storage = LocalStorage(tmp_path / "files")
    actor = Actor.system("test")
    upload = {
        "actor": actor,
        "storage": storage,
        "patient_id": uuid.UUID(patient["id"]),
        "filename": "a.txt",
        "declared_type": "text/plain",
        "content": b"hello",
        "max_bytes": 1024,
    }
    # The row commits on its own: inside a transaction that could still fail, nothing is stored.
    with pytest.raises(RuntimeError, match="outside a transaction"):
        async with db.driver_transaction() as conn:
            await service.upload_document(conn=conn, **upload)
    assert _files(tmp_path) == []

    # A failure inside the database (a trigger refusing the row) leaves no file either.
    admin = await asyncpg.connect(database_url)
    await admin.execute(
        """
        CREATE FUNCTION test_refuse_documents() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$;
        CREATE TRIGGER test_refuse BEFORE INSERT ON documents
            FOR EACH ROW EXECUTE FUNCTION test_refuse_documents();
        """
    )
    try:
        with pytest.raises(asyncpg.RaiseError):
            async with db.statement_connection() as conn:
                await service.upload_document(conn=conn, **upload)
    finally:
        await admin.execute("DROP TRIGGER test_refuse ON documents; DROP FUNCTION test_refuse_documents();")
        await admin.close()
    assert _files(tmp_path) == []


async def test_local_storage_refuses_path_tricks(tmp_path) -> None:
    storage = LocalStorage(tmp_path)
    for key in ("../x", "/etc/passwd", "a/../../b", "A/B", ""):
        with pytest.raises(ValueError, match="invalid storage key"):
            check_key(key)
    await storage.put("documents/ab/cd", b"1", content_type="text/plain")
    assert await storage.get("documents/ab/cd") == b"1"
    await storage.delete("documents/ab/cd")
    await storage.delete("documents/ab/cd")


async def test_documents_of_unknown_deleted_or_merged_patients(client, settings) -> None:
    headers = auth_headers(settings, "nurse")
    missing = await client.get(f"/api/v1/patients/{uuid.uuid4()}/documents", headers=headers)
    assert missing.status_code == 404
    patient = await make_patient(client, settings)
    survivor = await make_patient(client, settings)
    clerk = auth_headers(settings, "receptionist")
    await client.post(f"/api/v1/patients/{patient['id']}/merge", json={"into": survivor["id"]}, headers=clerk)
    merged = await client.post(
        f"/api/v1/patients/{patient['id']}/documents",
        files={"file": ("a.txt", b"x", "text/plain")},
        headers=headers,
    )
    assert merged.status_code == 409
    assert merged.json()["merged_into"] == survivor["id"]
    await client.delete(f"/api/v1/patients/{survivor['id']}", headers=clerk)
    assert (
        await client.get(f"/api/v1/patients/{survivor['id']}/documents", headers=headers)
    ).status_code == 410
