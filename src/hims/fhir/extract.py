"""Pull search index values out of a resource on write (pure Python, no database)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
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


#: A dot path split once: (stem, whether the part is a ``name[x]`` choice) per part.
Steps = tuple[tuple[str, bool], ...]


@functools.cache
def steps_of(path: str) -> Steps:
    """The steps of a dot path."""
    return tuple((part[:-3], True) if part.endswith("[x]") else (part, False) for part in path.split("."))


def walk(node: Any, path: str, choices: tuple[str, ...] | None = None) -> list[Any]:
    """Values at a dot path; lists are flattened; ``name[x]`` matches ``nameXxx`` (limited to ``choices``)."""
    return walk_steps(node, steps_of(path), choices)


def walk_steps(node: Any, steps: Steps, choices: tuple[str, ...] | None = None) -> list[Any]:
    """`walk` over a path's steps; stops at the first step that finds nothing."""
    current: list[Any] = [node]
    for stem, choice in steps:
        nxt: list[Any] = []
        for item in current:
            if not isinstance(item, dict):
                continue
            if choice:
                size = len(stem)
                values = [
                    v
                    for k, v in item.items()
                    if k.startswith(stem)
                    and k[size : size + 1].isupper()
                    and (choices is None or k[size:] in choices)
                ]
            elif stem in item:
                values = [item[stem]]
            else:
                continue
            for value in values:
                if isinstance(value, list):
                    nxt.extend(value)
                else:
                    nxt.append(value)
        if not nxt:
            return nxt
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
            return [_date_range(value)]
        if isinstance(value, dict):
            start, end = value.get("start"), value.get("end")
            if isinstance(start, str) or isinstance(end, str):
                low = _date_range(start)[0] if isinstance(start, str) else datetime(1, 1, 2, tzinfo=UTC)
                high = _date_range(end)[1] if isinstance(end, str) else datetime(9999, 12, 30, tzinfo=UTC)
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
    for first, steps, choices, add, param, where in _plan(resource["resourceType"]):
        # Most paths of a type are absent from any one resource: skip those without a walk.
        if first is not None and first not in resource:
            continue
        values = walk_steps(resource, steps, choices)
        if values:
            add(rows, param, values, where)
    return rows


#: Adds the index rows of one parameter's values (at ``where``, named in errors) to ``rows``.
Adder = Callable[[IndexRows, SearchParam, list[Any], str], None]
#: (first element unless a choice, steps, choice types, adder, parameter, path for errors).
PlanItem = tuple[str | None, Steps, tuple[str, ...] | None, Adder, SearchParam, str]


@functools.cache
def _plan(resource_type: str) -> tuple[PlanItem, ...]:
    """Every indexed path of a type's search parameters, in parameter order (TYPES is built once)."""
    plan: list[PlanItem] = []
    for param in TYPES[resource_type].params.values():
        add = _ADD.get(param.type)
        if add is None:
            continue
        for path in param.paths:
            steps = steps_of(path)
            first = None if steps[0][1] else steps[0][0]
            choices = DATE_CHOICES if param.type == "date" else None
            plan.append((first, steps, choices, add, param, f"{resource_type}.{path}"))
    return tuple(plan)


#: date_range of the dates extraction sees: a bundle repeats its encounters' times many times.
_date_range = functools.lru_cache(maxsize=4096)(date_range)


def _add_strings(rows: IndexRows, param: SearchParam, values: list[Any], _where: str) -> None:
    for value in values:
        seen = set()
        for text in _strings(value):
            if text and text not in seen:
                seen.add(text)
                rows.strings.append((param.name, normalise(text)[:MAX_INDEXED], text[:MAX_INDEXED]))


def _add_tokens(rows: IndexRows, param: SearchParam, values: list[Any], _where: str) -> None:
    name = param.name
    for value in values:
        rows.tokens.extend(
            (name, _clip(s), _clip(c)) for s, c in _tokens(value) if c is not None or s is not None
        )


def _add_dates(rows: IndexRows, param: SearchParam, values: list[Any], where: str) -> None:
    name = param.name
    for value in values:
        rows.dates.extend((name, low, high) for low, high in _date(value, where))


def _add_refs(rows: IndexRows, param: SearchParam, values: list[Any], _where: str) -> None:
    for value in values:
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            target = split_reference(value["reference"])
            if target and (not param.targets or target[0] in param.targets):
                rows.refs.append((param.name, target[0], target[1]))


def _add_quantities(rows: IndexRows, param: SearchParam, values: list[Any], _where: str) -> None:
    for value in values:
        if isinstance(value, dict) and "value" in value:
            try:
                number = Decimal(str(value["value"]))
            except InvalidOperation:
                continue
            rows.quantities.append(
                (param.name, number, value.get("system"), value.get("code") or value.get("unit"))
            )


def _add_uris(rows: IndexRows, param: SearchParam, values: list[Any], _where: str) -> None:
    # Stored with the tokens (no system): a uri parameter matches the whole value, or a prefix.
    name = param.name
    rows.tokens.extend((name, None, value[:MAX_INDEXED]) for value in values if isinstance(value, str))


def _add_numbers(rows: IndexRows, param: SearchParam, values: list[Any], _where: str) -> None:
    # Stored with the quantities (no system, no unit). JSON numbers only: a Range is not one.
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.quantities.append((param.name, Decimal(str(value)), None, None))


_ADD: dict[str, Adder] = {
    "string": _add_strings,
    "token": _add_tokens,
    "date": _add_dates,
    "reference": _add_refs,
    "quantity": _add_quantities,
    "uri": _add_uris,
    "number": _add_numbers,
}


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
    # An Appointment (or AppointmentResponse, Schedule...) names its patient among its actors.
    participants = resource.get("participant")
    for participant in participants if isinstance(participants, list) else []:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        if isinstance(actor, dict) and isinstance(actor.get("reference"), str):
            target = split_reference(actor["reference"])
            if target and target[0] == "Patient":
                return target[1]
    return None
