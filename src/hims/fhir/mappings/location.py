"""Location ↔ ``departments`` row (managingOrganization = the facility)."""

from __future__ import annotations

import uuid
from typing import Any

from hims.fhir.mappings._common import HIMS, drop_empty

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


def to_resource(row: dict[str, Any]) -> dict[str, Any]:
    """A FHIR Location from a ``departments`` row."""
    return drop_empty(
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
