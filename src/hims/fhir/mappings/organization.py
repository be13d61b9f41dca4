"""Organization ↔ ``facilities`` row (the facility code is an identifier in our system).

The row keeps the whole resource a FHIR client sent (`extra`); `to_resource` renders the row over
it (`_common.merged`), so what the row does not model survives a change made through REST.
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    HIMS,
    address,
    address_columns,
    beyond_store,
    drop_empty,
    identifiers_in,
    identifiers_out,
    merged,
    telecom,
    telecoms,
)

FACILITY_CODE_SYSTEM = f"{HIMS}/sid/facility-code"


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``facilities`` (``code`` None when no facility-code identifier is present)."""
    code = next(
        (i.get("value") for i in resource.get("identifier") or [] if i.get("system") == FACILITY_CODE_SYSTEM),
        None,
    )
    return {
        "code": code,
        "name": resource.get("name") or "",
        "phone": telecom(resource, "phone"),
        **address_columns(resource),
        "identifiers": identifiers_in(resource, skip_system=FACILITY_CODE_SYSTEM),
        "active": resource.get("active", True),
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR Organization from a ``facilities`` row, over the resource a client sent (``extra``)."""
    identifiers = [{"system": FACILITY_CODE_SYSTEM, "value": row["code"]}] if row.get("code") else []
    identifiers.extend(identifiers_out(row.get("identifiers")))
    fresh = drop_empty(
        {
            "resourceType": "Organization",
            "id": str(row["id"]) if row.get("id") else None,
            "identifier": identifiers,
            "active": row.get("active", True),
            "type": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}
                    ]
                }
            ],
            "name": row.get("name") or None,
            "telecom": telecoms(row.get("phone"), None),
            "address": [a] if (a := address(row)) else [],
        }
    )
    return merged(to_row, fresh, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """What to keep next to the row: the resource beyond what the store owns."""
    return beyond_store(resource)
