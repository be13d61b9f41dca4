"""Pull search index values out of a resource on write (pure Python, no database)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hims.core.errors import ValidationFailed, field_error
from hims.fhir.registry import COMPARTMENT_PATHS, RESOURCE_TYPES, TYPES, SearchParam
from hims.fhir.values import InvalidDate, date_range, normalise


@dataclass
class IndexRows:
    """The search index rows of one resource, per index table."""

    tokens: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    strings: list[tuple[str, str, str]] = field(default_factory=list)
    dates: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    refs: list[tuple[str, str, str]] = field(default_factory=list)
    quantities: list[tuple[str, Decimal, str | None, str | None]] = field(default_factory=list)


#: For date parameters, the choice types that carry a date (abatementString "around April" does not).
DATE_CHOICES = ("DateTime", "Date", "Period", "Instant")


def walk(node: Any, path: str, choices: tuple[str, ...] | None = None) -> list[Any]:
    """Values at a dot path; lists are flattened; ``name[x]`` matches ``nameXxx`` (limited to ``choices``)."""
    current: list[Any] = [node]
    for part in path.split("."):
        nxt: list[Any] = []
        choice = part.endswith("[x]")
        stem = part[:-3] if choice else part
        for item in current:
            if not isinstance(item, dict):
                continue
            if choice:
                values = [
                    v
                    for k, v in item.items()
                    if k.startswith(stem)
                    and k[len(stem) : len(stem) + 1].isupper()
                    and (choices is None or k[len(stem) :] in choices)
                ]
            else:
                values = [item[stem]] if stem in item else []
            for value in values:
                if isinstance(value, list):
                    nxt.extend(value)
                else:
                    nxt.append(value)
        current = nxt
    return current


#: Longest indexed text (chars): 4-byte UTF-8 worst case stays well under the B-tree row limit.
MAX_INDEXED = 500
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _clip(value: str | None) -> str | None:
    return value[:MAX_INDEXED] if isinstance(value, str) else None


def split_reference(reference: str) -> tuple[str, str] | None:
    """("Patient", "123") from "Patient/123", ".../fhir/Patient/123/_history/2"; None otherwise."""
    if reference.startswith(("#", "urn:")):
        return None
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] in RESOURCE_TYPES and _ID.match(parts[-1]):
        return parts[-2], parts[-1]
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        out: list[str] = []
        for key in (
            "text",
            "family",
            "given",
            "prefix",
            "suffix",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
            "display",
            "value",
        ):
            item = value.get(key)
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, list):
                out.extend(v for v in item if isinstance(v, str))
        return out
    return []


def _tokens(value: Any) -> list[tuple[str | None, str | None]]:
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, str):
        return [(None, value)]
    if isinstance(value, dict):
        if "coding" in value:
            return [(c.get("system"), c.get("code")) for c in value["coding"] if isinstance(c, dict)]
        if "code" in value and isinstance(value["code"], str):
            return [(value.get("system"), value["code"])]
        if "value" in value and isinstance(value["value"], str):
            return [(value.get("system"), value["value"])]
    return []


def _date(value: Any, where: str) -> list[tuple[datetime, datetime]]:
    try:
        if isinstance(value, str):
            return [date_range(value)]
        if isinstance(value, dict):
            start, end = value.get("start"), value.get("end")
            if isinstance(start, str) or isinstance(end, str):
                low = date_range(start)[0] if isinstance(start, str) else datetime(1, 1, 2, tzinfo=UTC)
                high = date_range(end)[1] if isinstance(end, str) else datetime(9999, 12, 30, tzinfo=UTC)
                return [(low, high)]
    except InvalidDate as exc:
        raise ValidationFailed(
            f"Invalid date value {exc.args[0]!r} at {where}.",
            code="invalid_date",
            errors=[field_error(where, "not a FHIR date/dateTime", "invalid_date")],
        ) from None
    return []


def extract(resource: dict[str, Any]) -> IndexRows:
    """All index rows for ``resource`` according to its type's search parameters."""
    rows = IndexRows()
    type_def = TYPES[resource["resourceType"]]
    for param in type_def.params.values():
        _extract_param(resource, param, rows)
    return rows


def _extract_param(resource: dict[str, Any], param: SearchParam, rows: IndexRows) -> None:
    name = param.name
    for path in param.paths:
        for value in walk(resource, path, DATE_CHOICES if param.type == "date" else None):
            if param.type == "string":
                seen = set()
                for text in _strings(value):
                    if text and text not in seen:
                        seen.add(text)
                        rows.strings.append((name, normalise(text)[:MAX_INDEXED], text[:MAX_INDEXED]))
            elif param.type == "token":
                rows.tokens.extend(
                    (name, _clip(s), _clip(c)) for s, c in _tokens(value) if c is not None or s is not None
                )
            elif param.type == "date":
                rows.dates.extend(
                    (name, low, high) for low, high in _date(value, f"{resource['resourceType']}.{path}")
                )
            elif param.type == "reference":
                if isinstance(value, dict) and isinstance(value.get("reference"), str):
                    target = split_reference(value["reference"])
                    if target and (not param.targets or target[0] in param.targets):
                        rows.refs.append((name, target[0], target[1]))
            elif param.type == "quantity" and isinstance(value, dict) and "value" in value:
                try:
                    number = Decimal(str(value["value"]))
                except InvalidOperation:
                    continue
                rows.quantities.append(
                    (name, number, value.get("system"), value.get("code") or value.get("unit"))
                )


def compartment_patient(resource: dict[str, Any]) -> str | None:
    """The Patient id the resource belongs to (the Patient itself for a Patient)."""
    if resource["resourceType"] == "Patient":
        return str(resource.get("id"))
    for path in COMPARTMENT_PATHS:
        value = resource.get(path)
        candidates = value if isinstance(value, list) else [value]
        for candidate in candidates:
            if isinstance(candidate, dict) and isinstance(candidate.get("reference"), str):
                target = split_reference(candidate["reference"])
                if target and target[0] == "Patient":
                    return target[1]
    return None
