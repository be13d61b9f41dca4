"""Organization ↔ ``facilities``, Location ↔ ``departments``, Practitioner ↔ ``practitioners``,
Appointment ↔ ``appointments``.

Facilities and departments need a code; a resource without our code identifier is given one
(``ORG-``/``LOC-`` and the start of its id), which is added to the resource as our identifier.
None of these rows is ever removed (appointments and history point at them): a FHIR delete
retires the row (``active = false``; an Appointment is cancelled). PractitionerRole is not
projected: a practitioner's placement is two columns of ``practitioners``, not a record of its own
(see docs/fhir.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import asyncpg

from hims.fhir import repository as repo
from hims.fhir.mappings import appointment as appointment_mapping
from hims.fhir.mappings import location as location_mapping
from hims.fhir.mappings import organization as organization_mapping
from hims.fhir.mappings import practitioner as practitioner_mapping
from hims.fhir.mappings import practitioner_role
from hims.fhir.projection import Candidate, Completer, Projector, keeping_extra, register
from hims.practitioners.models import Department, Facility, Practitioner
from hims.scheduling.models import Appointment

Mapping = Callable[[dict[str, Any]], dict[str, Any]]
#: Elements the store owns; never carried over from a stored version.
_OWN = frozenset({"resourceType", "id", "meta", "text"})


# ------------------------------------------------------------------------------ domain → FHIR


def merged(to_row: Mapping, fresh: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """``fresh`` (built from the row) plus every part of ``stored`` the row does not contradict.

    A stored element, or list item, is kept when adding it leaves ``to_row`` unchanged: elements
    we do not model survive, and a richer original form of a modelled item (a name with a
    period) replaces the row's plain one. A stored item the row was read from and that no longer
    matches it (an old phone number) is dropped.
    """
    if not stored:
        return fresh
    target = to_row(fresh)
    out = copy.deepcopy(fresh)

    def same() -> bool:
        return to_row(out) == target

    for key, old in stored.items():
        if key in _OWN or out.get(key) == old:
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
    return out


def _merge_list(
    to_row: Mapping,
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


def _keeping(to_row: Mapping, to_resource: Mapping) -> Callable[[dict[str, Any], dict[str, Any] | None], Any]:
    """A projector's ``to_resource`` for a mapping without ``extra``: the row merged over the stored."""

    def build(row: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
        return merged(to_row, to_resource(row), stored)

    return build


# ------------------------------------------------------------------------------ codes


def _assigner(table: str, prefix: str, system: str, scope: str | None = None) -> Completer:
    """A ``complete`` hook giving rows without a code one (``<prefix>-`` + 12 hex digits of the id).

    A row keeps its code when the resource loses the identifier; a code another row holds (within
    ``scope``, e.g. the facility of a department) makes the resource FHIR-only (or 422 on update).
    """

    async def assign(conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
        scope_sql = f", {scope}" if scope else ", NULL::uuid"
        codes = [c.row["code"] for c in candidates if c.row.get("code")]
        holders: dict[tuple[Any, Any], Any] = {}
        if codes:
            match, value = repo.any_of("code", 1, codes, "text")
            sql = f"SELECT id, code{scope_sql} AS scope FROM {table} WHERE {match}"  # noqa: S608
            holders = {(r["code"], r["scope"]): r["id"] for r in await conn.fetch(sql, value)}
        for c in candidates:
            if not c.row.get("code"):
                c.row["code"] = c.existing["code"] if c.existing else f"{prefix}-{c.id.hex[:12].upper()}"
                ident = {"system": system, "value": c.row["code"]}
                c.resource["identifier"] = [*(c.resource.get("identifier") or []), ident]
                c.amended = True
            key = (c.row["code"], c.row.get(scope) if scope else None)
            if holders.setdefault(key, c.id) != c.id:
                c.problem = "code is used by another record"

    return assign


# ------------------------------------------------------------------------------ appointments


async def check_times(_conn: asyncpg.Connection, candidates: list[Candidate]) -> None:
    """An appointment must end after it starts (the double-booking rule is the database's)."""
    for c in candidates:
        if c.row["ends_at"] <= c.row["starts_at"]:
            c.problem = "end must be after start"


# ------------------------------------------------------------------------------ registration

_RETIRE = {"active": "false"}

ORGANIZATION = register(
    Projector(
        resource_type="Organization",
        model=Facility,
        to_row=organization_mapping.to_row,
        to_resource=_keeping(organization_mapping.to_row, organization_mapping.to_resource),
        rank=10,
        required=("name",),
        complete=_assigner("facilities", "ORG", organization_mapping.FACILITY_CODE_SYSTEM),
        delete_sets=_RETIRE,
        patient_column=None,
    )
)

LOCATION = register(
    Projector(
        resource_type="Location",
        model=Department,
        to_row=location_mapping.to_row,
        to_resource=_keeping(location_mapping.to_row, location_mapping.to_resource),
        rank=20,
        required=("name", "facility_id"),
        references={"facility_id": "facilities"},
        complete=_assigner("departments", "LOC", location_mapping.DEPARTMENT_CODE_SYSTEM, "facility_id"),
        delete_sets=_RETIRE,
        patient_column=None,
    )
)

PRACTITIONER = register(
    Projector(
        resource_type="Practitioner",
        model=Practitioner,
        to_row=practitioner_mapping.to_row,
        to_resource=_keeping(practitioner_mapping.to_row, practitioner_mapping.to_resource),
        rank=30,
        required=("given_name", "family_name"),
        delete_sets=_RETIRE,
        patient_column=None,
        derived=lambda row: [practitioner_role.from_practitioner(row)],
    )
)

APPOINTMENT = register(
    Projector(
        resource_type="Appointment",
        model=Appointment,
        to_row=appointment_mapping.to_row,
        to_resource=keeping_extra(appointment_mapping),
        rank=60,
        required=("patient_id", "practitioner_id", "starts_at", "ends_at"),
        references={
            "patient_id": "patients",
            "practitioner_id": "practitioners",
            "facility_id": "facilities",
            "department_id": "departments",
        },
        complete=check_times,
        delete_sets={"status": "'cancelled'", "cancelled_at": "coalesce(cancelled_at, now())"},
        constraint_codes={"ex_appointments_no_double_booking": "double_booking"},
    )
)

__all__ = ["APPOINTMENT", "LOCATION", "ORGANIZATION", "PRACTITIONER", "merged"]
