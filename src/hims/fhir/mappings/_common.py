"""Helpers shared by the mappings."""

from __future__ import annotations

from typing import Any

HIMS = "https://hims.arocord.com/fhir"
MR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def telecom(resource: dict[str, Any], system: str) -> str | None:
    """The first ContactPoint value of ``system`` (phone, email)."""
    for point in resource.get("telecom") or []:
        if point.get("system") == system and point.get("value"):
            return str(point["value"])
    return None


def telecoms(phone: str | None, email: str | None) -> list[dict[str, Any]]:
    """ContactPoints for a phone and an email."""
    out: list[dict[str, Any]] = []
    if phone:
        out.append({"system": "phone", "value": phone})
    if email:
        out.append({"system": "email", "value": email})
    return out


def address_columns(resource: dict[str, Any]) -> dict[str, Any]:
    """address_line/city/state/postal_code/country from the first Address (lines joined by newlines)."""
    addresses = resource.get("address")
    first = (addresses[0] if isinstance(addresses, list) and addresses else addresses) or {}
    country = first.get("country")
    return {
        "address_line": "\n".join(first.get("line") or []) or None,
        "city": first.get("city"),
        "state": first.get("state"),
        "postal_code": first.get("postalCode"),
        "country": country if isinstance(country, str) and len(country) == 2 else None,
    }


def address(row: dict[str, Any]) -> dict[str, Any] | None:
    """An Address from the address columns (None when all are empty)."""
    out: dict[str, Any] = {}
    if row.get("address_line"):
        out["line"] = str(row["address_line"]).split("\n")
    for column, key in (
        ("city", "city"),
        ("state", "state"),
        ("postal_code", "postalCode"),
        ("country", "country"),
    ):
        if row.get(column):
            out[key] = row[column]
    return out or None


def identifiers_in(resource: dict[str, Any], *, skip_system: str | None = None) -> list[dict[str, Any]]:
    """Identifiers as stored in the ``identifiers`` JSONB column (system, value, type code, use)."""
    out = []
    for ident in resource.get("identifier") or []:
        if skip_system and ident.get("system") == skip_system:
            continue
        item: dict[str, Any] = {"system": ident.get("system"), "value": ident.get("value")}
        codings = (ident.get("type") or {}).get("coding") or []
        if codings and codings[0].get("code"):
            item["type"] = codings[0]["code"]
        if ident.get("use"):
            item["use"] = ident["use"]
        out.append(item)
    return out


def identifiers_out(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """FHIR Identifiers from the ``identifiers`` column."""
    out = []
    for item in items or []:
        ident: dict[str, Any] = {}
        if item.get("use"):
            ident["use"] = item["use"]
        if item.get("type"):
            ident["type"] = {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": item["type"]}]
            }
        if item.get("system"):
            ident["system"] = item["system"]
        if item.get("value"):
            ident["value"] = item["value"]
        out.append(ident)
    return out


def drop_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """Remove keys whose value is None or an empty list/dict (FHIR forbids empty elements)."""
    return {k: v for k, v in resource.items() if v not in (None, [], {})}
