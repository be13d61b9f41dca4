"""Helpers shared by the mappings."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hims.fhir.versions import SERVER_META

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


# --- Shared pieces for the clinical mappings (Encounter, Observation, Condition...) ---------------

UCUM = "http://unitsofmeasure.org"
#: Elements every mapping owns or leaves to the store (never kept in ``extra``).
_ALWAYS = frozenset({"resourceType", "id", "meta", "text"})


def ext_url(name: str) -> str:
    """The canonical URL of one of our extensions."""
    return f"{HIMS}/StructureDefinition/{name}"


def row_of(obj: Any) -> dict[str, Any]:
    """A plain ``{column: value}`` dict from a SQLAlchemy model instance (what the mappings take)."""
    from sqlalchemy import inspect

    return {attr.key: getattr(obj, attr.key) for attr in inspect(obj).mapper.column_attrs}


def instant(value: datetime | None) -> str | None:
    """A FHIR instant/dateTime in UTC with a ``Z`` (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_instant(value: Any) -> datetime | None:
    """A timezone-aware datetime from a FHIR dateTime (a bare date is midnight UTC; partial dates too)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_date(value: Any) -> date | None:
    """The date part of a FHIR date/dateTime (partial dates are not dates: None)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    return date.fromisoformat(value[:10])


def ref(resource_type: str, id_: Any) -> dict[str, str] | None:
    """A Reference ``Type/<id>`` (None without an id)."""
    return {"reference": f"{resource_type}/{id_}"} if id_ else None


def ref_id(reference: Any, resource_type: str) -> uuid.UUID | None:
    """The UUID of a ``Type/<uuid>`` Reference (None for other types, contained or non-UUID ids)."""
    value = (reference or {}).get("reference") if isinstance(reference, dict) else None
    if not isinstance(value, str):
        return None
    # Absolute references keep the type and id in their last two segments.
    parts = value.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != resource_type:
        return None
    try:
        return uuid.UUID(parts[-1])
    except ValueError:
        return None


def concept(system: str | None, code: str | None, display: str | None, *, text: str | None = None) -> Any:
    """A CodeableConcept with one coding (and text)."""
    coding = drop_empty({"system": system, "code": code, "display": display})
    return drop_empty({"coding": [coding] if coding.get("code") else [], "text": text}) or None


def pick_coding(cc: Any, *systems: str) -> dict[str, Any]:
    """The first coding of ``cc`` in one of ``systems`` (in that order), else its first coding, else {}."""
    codings = [c for c in ((cc or {}).get("coding") or []) if isinstance(c, dict)]
    for system in systems:
        for coding in codings:
            if coding.get("system") == system and coding.get("code"):
                return coding
    return codings[0] if codings else {}


def concept_text(cc: Any) -> str | None:
    """A CodeableConcept's text, else its first coding's display."""
    if not isinstance(cc, dict):
        return None
    return cc.get("text") or pick_coding(cc).get("display")


def status_code(cc: Any) -> str | None:
    """The code of the first coding of a status CodeableConcept."""
    return pick_coding(cc).get("code")


def extension(name: str, **value: Any) -> dict[str, Any] | None:
    """One of our extensions, e.g. ``extension("signed-at", valueDateTime=...)`` (None when no value)."""
    ((key, val),) = value.items()
    return {"url": ext_url(name), key: val} if val not in (None, "") else None


def uuid_extension(name: str, value: Any) -> dict[str, Any] | None:
    """An extension holding a UUID (staff account ids: users are not FHIR resources here)."""
    return extension(name, valueString=str(value) if value else None)


def extensions(*items: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The non-empty extensions."""
    return [item for item in items if item]


def ext_value(resource: dict[str, Any], name: str) -> Any:
    """The value[x] of our extension ``name`` on ``resource`` (None when absent)."""
    for item in resource.get("extension") or []:
        if item.get("url") == ext_url(name):
            return next((v for k, v in item.items() if k.startswith("value")), None)
    return None


def ext_uuid(resource: dict[str, Any], name: str) -> uuid.UUID | None:
    """A UUID-valued extension (``valueString`` holding the UUID)."""
    value = ext_value(resource, name)
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def unmapped(
    resource: dict[str, Any], modelled: frozenset[str], references: dict[str, str] | None = None
) -> dict[str, Any]:
    """The elements a mapping does not model, kept as they are so nothing is lost.

    Store them next to the row; ``to_resource(row, extra=...)`` puts them back. Extensions that
    are not ours are kept too (ours are rebuilt from the row), and so is a modelled reference
    element (``references``: element → target type) whose target is not one of our UUIDs.
    """
    out = {k: v for k, v in resource.items() if k not in modelled and k not in _ALWAYS}
    # Profiles, tags and security labels are the client's; version and time are the server's.
    meta = resource.get("meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in SERVER_META}
        if kept:
            out["meta"] = kept
    for key, target in (references or {}).items():
        if isinstance(resource.get(key), dict) and ref_id(resource[key], target) is None:
            out[key] = resource[key]
    foreign = [e for e in resource.get("extension") or [] if not str(e.get("url", "")).startswith(HIMS)]
    if foreign:
        out["extension"] = foreign
    else:
        out.pop("extension", None)
    return out


def with_extra(resource: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """``resource`` plus the unmapped elements.

    The row's own elements win; lists both sides have (extensions, identifiers, participants) are
    concatenated, the row's first; an object both sides have (e.g. ``dispenseRequest``, of which a
    mapping models one part) is merged key by key, the row winning.
    """
    if not extra:
        return resource
    out = dict(resource)
    for key, value in extra.items():
        if isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = [*out[key], *value]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**value, **out[key]}
        else:
            out.setdefault(key, value)
    return out


def as_decimal(value: Any) -> Decimal | None:
    """A JSON number as an exact Decimal (None stays None)."""
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def quantity(value: Decimal | None, unit: str | None, *, ucum: bool = True) -> dict[str, Any] | None:
    """A Quantity (UCUM-coded when ``ucum``)."""
    if value is None:
        return None
    return drop_empty(
        {
            "value": value,
            "unit": unit,
            "system": UCUM if ucum and unit else None,
            "code": unit if ucum else None,
        }
    )


def reason_text(reasons: Any) -> str | None:
    """Our one reason column from a list of CodeableConcepts (texts or displays joined by ``; ``)."""
    texts = [concept_text(cc) for cc in reasons or []]
    return "; ".join(t for t in texts if t) or None


def coded_reasons(resource: dict[str, Any], key: str = "reasonCode") -> list[dict[str, Any]] | None:
    """The reasons to keep in ``extra`` when they carry codings our text column cannot hold."""
    reasons = resource.get(key) or []
    return reasons if any(cc.get("coding") for cc in reasons) else None


def restore_reasons(
    resource: dict[str, Any], extra: dict[str, Any] | None, reason: str | None, key: str = "reasonCode"
) -> dict[str, Any] | None:
    """Put the original coded reasons back while the row's reason text still says the same.

    Returns ``extra`` without them (the row's edited reason wins over stale codings).
    """
    if not extra or key not in extra:
        return extra
    kept = dict(extra)
    original = kept.pop(key)
    if reason_text(original) == reason:
        resource[key] = original
    return kept


# --- Mappings that keep the whole resource (Organization, Location, Practitioner) -----------------

#: A mapping's ``to_row``.
ToRow = Callable[[dict[str, Any]], dict[str, Any]]


def beyond_store(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without the elements the store owns (resourceType, id, meta, text): what a
    mapping that keeps the whole resource stores next to the row (its ``extra``)."""
    return {k: v for k, v in resource.items() if k not in _ALWAYS}


def merged(to_row: ToRow, fresh: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """``fresh`` (built from the row) with ``stored`` (what a FHIR client sent) wherever the row does
    not contradict it.

    A stored element, or list item, is kept when adding it leaves ``to_row`` unchanged: elements
    we do not model survive, and a richer original form of a modelled item (a name with a period)
    replaces the row's plain one. A stored item the row was read from and that no longer matches
    it (an old phone number) is dropped. An element the row's rendering adds and the stored
    version lacks (a default such as ``active`` or an organization type) is left out when the row
    reads the same without it, so a resource comes back as it was sent until the row changes.
    """
    if not stored:
        return fresh
    target = to_row(fresh)
    out = copy.deepcopy(fresh)

    def same() -> bool:
        return to_row(out) == target

    for key, old in stored.items():
        if key in _ALWAYS or out.get(key) == old:
            continue
        if isinstance(old, list) and isinstance(out.get(key), list):
            _merge_list(to_row, stored, out, key, old, same)
            continue
        previous = out.get(key)
        out[key] = old
        if not same():
            if previous is None:
                del out[key]
            else:
                out[key] = previous
    for key in [k for k in out if k not in stored and k not in _ALWAYS]:
        value = out.pop(key)
        if not same():
            out[key] = value
    return out


def _merge_list(
    to_row: ToRow,
    stored: dict[str, Any],
    out: dict[str, Any],
    key: str,
    old: list[Any],
    same: Callable[[], bool],
) -> None:
    """Merge the stored items of list element ``key`` into ``out[key]`` (see `merged`)."""
    before = to_row(stored)
    replaceable = [i for i, item in enumerate(out[key]) if item not in old]
    for item in old:
        if item in out[key]:
            continue
        for i in replaceable:
            previous = out[key][i]
            out[key][i] = item
            if same():
                replaceable.remove(i)
                break
            out[key][i] = previous
        else:
            read_from = to_row({**stored, key: [o for o in old if o is not item]}) != before
            if read_from:
                continue
            out[key].append(item)
            if not same():
                out[key].pop()
