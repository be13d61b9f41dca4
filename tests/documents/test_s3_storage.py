from __future__ import annotations

import pytest
from pydantic import SecretStr

from hims.core.storage import FileMissing, S3Storage, make_storage
from tests.conftest import make_settings, serve_in_process
from tests.documents.fake_s3 import fake_s3
from tests.patients.factories import auth_headers, make_patient


async def test_s3_backend_puts_gets_and_deletes(database_url, tmp_path) -> None:
    with fake_s3() as (endpoint, store):
        settings = make_settings(
            database_url,
            None,
            hims_data_dir=tmp_path,
            storage_backend="s3",
            storage_s3_bucket="hims-docs",
            storage_s3_endpoint_url=endpoint,
            aws_region="us-east-1",
            aws_access_key_id=SecretStr("test"),
            aws_secret_access_key=SecretStr("test-secret"),
        )
        storage = make_storage(settings)
        assert isinstance(storage, S3Storage)
        await storage.put("documents/ab/abc", b"%PDF-1.7 hello", content_type="application/pdf")
        body, headers = store.objects[("hims-docs", "documents/ab/abc")]
        assert body == b"%PDF-1.7 hello"
        assert headers["content-type"] == "application/pdf"
        assert headers["x-amz-server-side-encryption"] == "AES256"
        assert await storage.get("documents/ab/abc") == b"%PDF-1.7 hello"
        await storage.delete("documents/ab/abc")
        with pytest.raises(FileMissing):
            await storage.get("documents/ab/abc")
        with pytest.raises(ValueError, match="invalid storage key"):
            await storage.put("../escape", b"x", content_type="text/plain")
    assert not (tmp_path / "files").exists()


async def test_documents_api_on_the_s3_backend(database_url, redis_url, tmp_path) -> None:
    with fake_s3() as (endpoint, store):
        settings = make_settings(
            database_url,
            redis_url,
            hims_data_dir=tmp_path,
            storage_backend="s3",
            storage_s3_bucket="hims-docs",
            storage_s3_endpoint_url=endpoint,
            aws_region="us-east-1",
            aws_access_key_id=SecretStr("test"),
            aws_secret_access_key=SecretStr("test-secret"),
        )
        async with serve_in_process(settings) as http:
            patient = await make_patient(http, settings)
            headers = auth_headers(settings, "nurse")
            uploaded = await http.post(
                f"/api/v1/patients/{patient['id']}/documents",
                files={"file": ("a.txt", b"on s3", "text/plain")},
                headers=headers,
            )
            assert uploaded.status_code == 201, uploaded.text
            hex_id = uploaded.json()["id"].replace("-", "")
            assert [key for _bucket, key in store.objects] == [f"documents/{hex_id[:2]}/{hex_id}"]
            content = await http.get(f"/api/v1/documents/{uploaded.json()['id']}/content", headers=headers)
            assert content.content == b"on s3"
