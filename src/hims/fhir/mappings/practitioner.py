"""Practitioner ↔ ``practitioners`` row (facility/department belong on PractitionerRole)."""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import HIMS, drop_empty, identifiers_in, identifiers_out, telecom, telecoms

PROFESSION_URL = f"{HIMS}/StructureDefinition/profession"
SPECIALTY_URL = f"{HIMS}/StructureDefinition/specialty"


def _extension(resource: dict[str, Any], url: str) -> str | None:
    for ext in resource.get("extension") or []:
        if ext.get("url") == url:
            return str(ext.get("valueString"))
    return None


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``practitioners``."""
    names = resource.get("name") or [{}]
    name = next((n for n in names if n.get("use") == "official"), names[0])
    prefix = name.get("prefix") or []
    qualification = ((resource.get("qualification") or [{}])[0].get("code") or {}).get("text")
    return {
        "identifiers": identifiers_in(resource),
        "prefix": prefix[0] if prefix else None,
        "given_name": " ".join(name.get("given") or []),
        "family_name": name.get("family") or "",
        "profession": _extension(resource, PROFESSION_URL) or qualification or "other",
        "specialty": _extension(resource, SPECIALTY_URL),
        "phone": telecom(resource, "phone"),
        "email": telecom(resource, "email"),
        "active": resource.get("active", True),
    }


def to_resource(row: dict[str, Any]) -> dict[str, Any]:
    """A FHIR Practitioner from a ``practitioners`` row."""
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
    return drop_empty(
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
