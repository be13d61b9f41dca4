"""The SMART on FHIR Python client (fhirclient) works against a real server process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fhirclient import client
from fhirclient.models.patient import Patient

from hims.settings import Settings
from tests.fhir.conftest import token_for

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fhirclient_session(base: str, token: str) -> client.FHIRClient:
    smart = client.FHIRClient(settings={"app_id": "hims-test", "api_base": base})
    smart.server.session.headers["Authorization"] = f"Bearer {token}"
    return smart


async def test_fhirclient_prepare_read_and_search(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HIMS_ENV": "test",
        "HIMS_DATA_DIR": str(tmp_path),
        "JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "LOG_LEVEL": "warning",
    }
    env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "hims.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}/fhir/R4"
    token = token_for(settings, roles=["physician"])
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get(f"{base}/metadata")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                await asyncio.sleep(0.2)
            created = await http.post(
                f"{base}/Patient",
                json={
                    "resourceType": "Patient",
                    "name": [{"family": "Client", "given": ["Smart"]}],
                    "birthDate": "1990-01-01",
                },
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
            )
            assert created.status_code == 201
            patient_id = created.json()["id"]

        def use_client() -> tuple[bool, str, int]:
            smart = _fhirclient_session(base, token)
            smart.prepare()
            patient = Patient.read(patient_id, smart.server)
            found = list(Patient.where(struct={"family": "client"}).perform_resources_iter(smart.server))
            return smart.ready, patient.name[0].family, len(found)

        ready, family, count = await asyncio.to_thread(use_client)
        assert ready
        assert family == "Client"
        assert count == 1
    finally:
        server.terminate()
        server.wait(timeout=15)
