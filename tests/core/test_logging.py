"""Access logs are JSON with request id, route template, status and latency, and carry no PHI."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient

from hims.app import create_app
from hims.core.security import require_public
from hims.settings import Settings

NAME = "Okafor"

# A stand-in under its own prefix, so the real (authenticated) patient routes do not shadow it.
router = APIRouter(prefix="/logtest", dependencies=[require_public()])


@router.get("/patients")
async def search(name: str) -> dict[str, int]:
    return {"count": 0}


@router.get("/patients/{patient_id}")
async def read(patient_id: str) -> dict[str, str]:
    return {"id": "x"}


@router.get("/patients-crash")
async def crash(name: str) -> None:
    raise ValueError(f"cannot find {name}")


async def test_logs_carry_no_patient_name(settings: Settings, capfd: pytest.CaptureFixture[str]):
    app = create_app(settings.model_copy(update={"log_level": "info"}))
    app.include_router(router)
    transport = ASGITransport(app=app, client=("127.0.0.1", 50000), raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        ok = await http.get(f"/logtest/patients?name={NAME}", headers={"X-Request-ID": "req-1"})
        assert ok.status_code == 200
        assert (await http.get(f"/logtest/patients/{NAME}")).status_code == 200
        assert (await http.get(f"/does-not-exist/{NAME}?q={NAME}")).status_code == 404
        assert (await http.get(f"/logtest/patients?nam={NAME}")).status_code == 422
        assert (await http.get(f"/logtest/patients-crash?name={NAME}")).status_code == 500
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, err
    assert NAME not in err, [line for line in lines if NAME in line]
    access = [r for r in records if r.get("event") == "request"]
    assert len(access) == 5
    first = access[0]
    assert first["request_id"] == "req-1"
    assert first["route"] == "/logtest/patients"
    assert first["status"] == 200
    assert first["method"] == "GET"
    assert first["latency_ms"] >= 0
    assert access[1]["route"] == "/logtest/patients/{patient_id}"
    assert access[2]["route"] == "<unmatched>"
    assert access[2]["status"] == 404
    assert [r["status"] for r in access[3:]] == [422, 500]
    assert all(r["request_id"] for r in access)
    errors = [r for r in records if r.get("event") == "unhandled_error"]
    assert errors
    assert errors[0]["error"] == "ValueError"
    # The stack is logged (to find the bug) without the message (which held the name).
    assert "test_logging.py" in errors[0]["exception"]
    assert "builtins.ValueError" in errors[0]["exception"]
