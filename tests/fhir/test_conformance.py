"""Conformance: every HL7 R4 example round-trips and validates; metadata is a valid CapabilityStatement."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from httpx import AsyncClient

from hims.fhir.domain import as_uuid
from hims.fhir.extract import split_reference
from hims.fhir.mappings.location import DEPARTMENT_CODE_SYSTEM
from hims.fhir.mappings.organization import FACILITY_CODE_SYSTEM
from hims.fhir.mappings.patient import MRN_SYSTEM
from hims.fhir.registry import TYPES
from hims.fhir.service import iter_references
from hims.fhir.storage import adapter_for

EXAMPLES = Path(__file__).parents[1] / "data" / "fhir" / "examples"
FILES = sorted(p for p in EXAMPLES.glob("*.json") if not p.name.startswith("_"))


def _strip(resource: dict[str, Any], *, record: bool) -> dict[str, Any]:
    """Without server-added fields: id, meta, the MRN we assign to a registered Patient and the
    code we assign to a facility (Organization) or department (Location); and for a domain record,
    whose resource is rendered from its row, the narrative (``text``, which the row does not keep)."""
    owned = ("id", "meta", "text") if record else ("id", "meta")
    out = {k: v for k, v in resource.items() if k not in owned}
    ours = {"Patient": MRN_SYSTEM, "Organization": FACILITY_CODE_SYSTEM, "Location": DEPARTMENT_CODE_SYSTEM}
    if out.get("resourceType") in ours and "identifier" in out:
        out["identifier"] = [i for i in out["identifier"] if i.get("system") != ours[out["resourceType"]]]
        if not out["identifier"]:
            del out["identifier"]
    return out


def _is_record(resource: dict[str, Any]) -> bool:
    """Whether the stored resource is a domain record's rendering (a mapped type with a record id)."""
    adapter = adapter_for(resource.get("resourceType", ""))
    return (
        adapter is not None and as_uuid(str(resource.get("id"))) is not None and not adapter.screen(resource)
    )


#: Stubs of domain record types must be valid records of their type.
_STUB_FIELDS: dict[str, dict[str, Any]] = {"Organization": {"name": "Stub"}}


def _exact(text: bytes | str) -> dict[str, Any]:
    """Parse keeping decimals exact: the store (JSONB numeric) keeps every digit of a decimal but may
    print 1E-22 as 0.0000000000000000000001, which is the same FHIR decimal."""
    data: dict[str, Any] = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    return data


async def _stub_targets(fhir: AsyncClient, resource: dict[str, Any]) -> None:
    """Create minimal resources for references the example makes to resources outside the set."""
    for _, ref in iter_references(resource):
        if ref.startswith(("#", "urn:", "http")) or "?" in ref:
            continue
        target = split_reference(ref)
        if target and target != (resource["resourceType"], resource.get("id")):  # not itself
            response = await fhir.put(
                f"/{target[0]}/{target[1]}",
                json={"resourceType": target[0], "id": target[1], **_STUB_FIELDS.get(target[0], {})},
            )
            assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_example_round_trips_and_validates(fhir: AsyncClient, path: Path) -> None:
    example = orjson.loads(path.read_bytes())
    if TYPES[example["resourceType"]].source is not None:
        # Read-only types (AuditEvent, served from the PHI access log) refuse client writes.
        get_fhir_model_class(example["resourceType"]).model_validate(example)
        refused = await fhir.post(f"/{example['resourceType']}", json=example)
        assert refused.status_code == 405, refused.text
        return
    await _stub_targets(fhir, example)
    # At the example's own id: a client-chosen id is no record of ours, so the resource is kept in
    # the FHIR store as sent (records of ours are rendered from their domain rows: the mapping
    # tests cover their round trip).
    created = await fhir.put(f"/{example['resourceType']}/{example['id']}", json=example)
    assert created.status_code == 201, created.text
    read = await fhir.get(f"/{example['resourceType']}/{example['id']}")
    assert read.status_code == 200
    body = read.json()
    record = _is_record(body)
    assert _strip(_exact(read.text), record=record) == _strip(_exact(path.read_bytes()), record=record)
    assert body["meta"]["versionId"] == "1"
    # Every R4 example validates against the fhir.resources R4B models (no exceptions were needed).
    get_fhir_model_class(example["resourceType"]).model_validate(body)


async def test_metadata_is_public_and_generated(fhir: AsyncClient) -> None:
    response = await fhir.get("/metadata", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    statement = response.json()
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["status"] == "active"
    assert statement["kind"] == "instance"
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"read", "vread", "create", "update", "delete", "search-type"} <= {
        i["code"] for i in patient["interaction"]
    }
    assert {"name", "birthdate", "address", "_id", "_lastUpdated"} <= {
        p["name"] for p in patient["searchParam"]
    }
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert {"category", "date", "value-quantity", "patient"} <= {
        p["name"] for p in observation["searchParam"]
    }
    get_fhir_model_class("CapabilityStatement").model_validate(
        {**statement, "rest": [{**statement["rest"][0], "resource": []}]}
    )
