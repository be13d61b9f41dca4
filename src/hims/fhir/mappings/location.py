"""Location ↔ ``departments`` row (managingOrganization = the facility).

The row keeps the whole resource a FHIR client sent (`extra`); `to_resource` renders the row over
it (`_common.merged`), so what the row does not model survives a change made through REST.
"""

from __future__ import annotations

import uuid
from typing import Any

from hims.fhir.mappings._common import HIMS, beyond_store, drop_empty, merged

DEPARTMENT_CODE_SYSTEM = f"{HIMS}/sid/department-code"


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``departments`` (facility_id from managingOrganization Organization/<uuid>)."""
    code = next(
        (
            i.get("value")
            for i in resource.get("identifier") or []
            if i.get("system") == DEPARTMENT_CODE_SYSTEM
        ),
        None,
    )
    facility_id = None
    ref = (resource.get("managingOrganization") or {}).get("reference", "")
    if ref.startswith("Organization/"):
        try:
            facility_id = uuid.UUID(ref.removeprefix("Organization/"))
        except ValueError:
            facility_id = None
    return {
        "code": code,
        "name": resource.get("name") or "",
        "facility_id": facility_id,
        "active": resource.get("status", "active") == "active",
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR Location from a ``departments`` row, over the resource a client sent (``extra``)."""
    fresh = drop_empty(
        {
            "resourceType": "Location",
            "id": str(row["id"]) if row.get("id") else None,
            "identifier": [{"system": DEPARTMENT_CODE_SYSTEM, "value": row["code"]}]
            if row.get("code")
            else [],
            "status": "active" if row.get("active", True) else "inactive",
            "name": row.get("name") or None,
            "mode": "instance",
            "managingOrganization": {"reference": f"Organization/{row['facility_id']}"}
            if row.get("facility_id")
            else None,
        }
    )
    return merged(to_row, fresh, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """What to keep next to the row: the resource beyond what the store owns."""
    return beyond_store(resource)
