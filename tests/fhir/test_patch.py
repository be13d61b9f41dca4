"""JSON Patch: the FHIR test-case suite (pure) and PATCH over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from httpx import AsyncClient

from hims.core.errors import HimsError
from hims.fhir.patch import apply
from tests.fhir.conftest import create, patient

CASES = orjson.loads((Path(__file__).parents[1] / "data" / "fhir" / "json-patch-tests.json").read_bytes())


@pytest.mark.parametrize("case", CASES, ids=[c["comment"] for c in CASES])
def test_json_patch_suite(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(HimsError):
            apply(case["doc"], case["patch"])
    else:
        assert apply(case["doc"], case["patch"]) == case["expected"]


async def test_patch_a_resource(fhir: AsyncClient) -> None:
    body = await create(fhir, patient())
    headers = {"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'}
    ops = [
        {"op": "replace", "path": "/gender", "value": "other"},
        {"op": "add", "path": "/active", "value": False},
    ]
    response = await fhir.patch(f"/Patient/{body['id']}", content=orjson.dumps(ops), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "other"
    assert response.json()["meta"]["versionId"] == "2"
    stale = await fhir.patch(f"/Patient/{body['id']}", content=orjson.dumps(ops), headers=headers)
    assert stale.status_code == 412
    failing = [{"op": "test", "path": "/gender", "value": "male"}]
    failed = await fhir.patch(
        f"/Patient/{body['id']}",
        content=orjson.dumps(failing),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert failed.status_code == 422
    assert failed.json()["resourceType"] == "OperationOutcome"
    retype = [{"op": "replace", "path": "/resourceType", "value": "Observation"}]
    bad = await fhir.patch(
        f"/Patient/{body['id']}",
        content=orjson.dumps(retype),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert bad.status_code == 400
