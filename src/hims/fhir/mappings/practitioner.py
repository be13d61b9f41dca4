"""Practitioner ↔ ``practitioners`` row (facility/department belong on PractitionerRole).

The row keeps the whole resource a FHIR client sent (`extra`); `to_resource` renders the row over
it (`_common.merged`), so what the row does not model survives a change made through REST. The
profession is our code in the profession extension; a resource without one reads as ``other``
(a qualification, such as a degree, is not a profession).
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import (
    HIMS,
    beyond_store,
    drop_empty,
    identifiers_in,
    identifiers_out,
    merged,
    telecom,
    telecoms,
)

PROFESSION_URL = f"{HIMS}/StructureDefinition/profession"
SPECIALTY_URL = f"{HIMS}/StructureDefinition/specialty"


def _extension(resource: dict[str, Any], url: str) -> str | None:
    for ext in resource.get("extension") or []:
        if ext.get("url") == url and isinstance(ext.get("valueString"), str):
            return str(ext["valueString"])
    return None


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``practitioners``."""
    names = resource.get("name") or [{}]
    name = next((n for n in names if n.get("use") == "official"), names[0])
    prefix = name.get("prefix") or []
    return {
        "identifiers": identifiers_in(resource),
        "prefix": prefix[0] if prefix else None,
        "given_name": " ".join(name.get("given") or []),
        "family_name": name.get("family") or "",
        "profession": _extension(resource, PROFESSION_URL) or "other",
        "specialty": _extension(resource, SPECIALTY_URL),
        "phone": telecom(resource, "phone"),
        "email": telecom(resource, "email"),
        "active": resource.get("active", True),
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR Practitioner from a ``practitioners`` row, over the resource a client sent (``extra``)."""
    extensions = [{"url": PROFESSION_URL, "valueString": row["profession"]}] if row.get("profession") else []
    if row.get("specialty"):
        extensions.append({"url": SPECIALTY_URL, "valueString": row["specialty"]})
    name = drop_empty(
        {
            "use": "official",
            "family": row.get("family_name") or None,
            "given": str(row["given_name"]).split(" ") if row.get("given_name") else [],
            "prefix": [row["prefix"]] if row.get("prefix") else [],
        }
    )
    fresh = drop_empty(
        {
            "resourceType": "Practitioner",
            "id": str(row["id"]) if row.get("id") else None,
            "extension": extensions,
            "identifier": identifiers_out(row.get("identifiers")),
            "active": row.get("active", True),
            "name": [name],
            "telecom": telecoms(row.get("phone"), row.get("email")),
        }
    )
    return merged(to_row, fresh, extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """What to keep next to the row: the resource beyond what the store owns."""
    return beyond_store(resource)
