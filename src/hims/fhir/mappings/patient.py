"""Patient ↔ ``patients`` row."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hims.fhir.mappings._common import (
    HIMS,
    MR_TYPE,
    address,
    address_columns,
    drop_empty,
    identifiers_in,
    identifiers_out,
    telecom,
    telecoms,
    unmapped,
    with_extra,
)

MRN_SYSTEM = f"{HIMS}/sid/mrn"
MODELLED = frozenset(
    {
        "identifier",
        "active",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "address",
        "deceasedBoolean",
        "deceasedDateTime",
        "contact",
        "communication",
        "link",
    }
)
_SEX = {"male": "male", "female": "female", "other": "unknown", "unknown": "unknown"}


def _official_name(resource: dict[str, Any]) -> dict[str, Any]:
    names = resource.get("name") or []
    for name in names:
        if name.get("use") == "official":
            return dict(name)
    return dict(names[0]) if names else {}


def _mrn(resource: dict[str, Any]) -> str | None:
    """Our MRN: the identifier in our MRN system (another system's MR number is just an identifier)."""
    for ident in resource.get("identifier") or []:
        if ident.get("system") == MRN_SYSTEM and ident.get("value") is not None:
            return str(ident["value"])
    return None


def _birth_date(value: Any) -> date | None:
    """The row's birth date: a partial FHIR date (``1970``, ``1970-05``: the year or month is all
    that is known) is registered as the first day of that period, as registration desks do."""
    if not isinstance(value, str):
        return None
    if len(value) == 4:
        value += "-01-01"
    elif len(value) == 7:
        value += "-01"
    return date.fromisoformat(value[:10]) if len(value) >= 10 else None


def _partial_birth_date(resource: dict[str, Any]) -> str | None:
    value = resource.get("birthDate")
    return value if isinstance(value, str) and len(value) in (4, 7) else None


def to_row(resource: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``patients`` (``mrn`` is None when the resource carries no MRN of ours)."""
    name = _official_name(resource)
    given = list(name.get("given") or [])
    gender = resource.get("gender") or "unknown"
    deceased_at = None
    if isinstance(resource.get("deceasedDateTime"), str):
        deceased_at = datetime.fromisoformat(resource["deceasedDateTime"].replace("Z", "+00:00"))
        if deceased_at.tzinfo is None:
            deceased_at = deceased_at.replace(tzinfo=UTC)
    language = None
    for comm in resource.get("communication") or []:
        codings = (comm.get("language") or {}).get("coding") or []
        if codings and (comm.get("preferred") or language is None):
            language = codings[0].get("code")
    contact = None
    for item in resource.get("contact") or []:
        contact_name = item.get("name") or {}
        relationship = ((item.get("relationship") or [{}])[0].get("coding") or [{}])[0].get("code")
        contact = (
            drop_empty(
                {
                    "name": contact_name.get("text")
                    or " ".join(
                        [*(contact_name.get("given") or []), contact_name.get("family") or ""]
                    ).strip()
                    or None,
                    "relationship": relationship,
                    "phone": telecom(item, "phone"),
                }
            )
            or None
        )
        break
    mrn = _mrn(resource)
    return {
        "mrn": mrn,
        "given_name": given[0] if given else "",
        "middle_name": " ".join(given[1:]) or None,
        "family_name": name.get("family") or "",
        "date_of_birth": _birth_date(resource.get("birthDate")),
        "sex_at_birth": _SEX.get(gender, "unknown"),
        "gender_identity": gender if gender == "other" else None,
        "phone": telecom(resource, "phone"),
        "email": telecom(resource, "email"),
        **address_columns(resource),
        "preferred_language": language,
        "identifiers": identifiers_in(resource, skip_system=MRN_SYSTEM),
        "emergency_contact": contact,
        "deceased": bool(resource.get("deceasedBoolean")) or deceased_at is not None,
        "deceased_at": deceased_at,
        "active": resource.get("active", True),
    }


def to_resource(row: dict[str, Any], *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A FHIR Patient from a ``patients`` row (id = the row's UUID), plus the unmapped ``extra``.

    A merged record is inactive and links to the survivor (``replaced-by``).
    """
    given = [row["given_name"]] if row.get("given_name") else []
    if row.get("middle_name"):
        given.extend(str(row["middle_name"]).split(" "))
    identifiers = []
    if row.get("mrn"):
        identifiers.append({"use": "usual", "type": MR_TYPE, "system": MRN_SYSTEM, "value": row["mrn"]})
    identifiers.extend(identifiers_out(row.get("identifiers")))
    gender = "other" if row.get("gender_identity") == "other" else row.get("sex_at_birth")
    if gender not in ("male", "female", "other", "unknown"):
        gender = "unknown"
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(row["id"]) if row.get("id") else None,
        "identifier": identifiers,
        "active": row.get("active", True),
        "name": [drop_empty({"use": "official", "family": row.get("family_name") or None, "given": given})],
        "telecom": telecoms(row.get("phone"), row.get("email")),
        "gender": gender,
        "birthDate": row["date_of_birth"].isoformat() if row.get("date_of_birth") else None,
        "address": [a] if (a := address(row)) else [],
    }
    partial = (extra or {}).get("birthDate")
    if isinstance(partial, str) and resource["birthDate"] and resource["birthDate"].startswith(partial):
        # Known only to the year or month (the row holds the period's first day); once the date is
        # corrected elsewhere the prefix no longer matches and the full date shows.
        resource["birthDate"] = partial
    if row.get("deceased_at"):
        resource["deceasedDateTime"] = row["deceased_at"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    elif row.get("deceased"):
        resource["deceasedBoolean"] = True
    contact = row.get("emergency_contact")
    if contact:
        resource["contact"] = [
            drop_empty(
                {
                    "relationship": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                    "code": contact["relationship"],
                                }
                            ]
                        }
                    ]
                    if contact.get("relationship")
                    else None,
                    "name": {"text": contact["name"]} if contact.get("name") else None,
                    "telecom": telecoms(contact.get("phone"), None),
                }
            )
        ]
    if row.get("preferred_language"):
        resource["communication"] = [
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": row["preferred_language"]}]},
                "preferred": True,
            }
        ]
    if row.get("merged_into_id"):
        resource["active"] = False
        resource["link"] = [
            {"other": {"reference": f"Patient/{row['merged_into_id']}"}, "type": "replaced-by"}
        ]
    return with_extra(drop_empty(resource), extra)


def extra(resource: dict[str, Any]) -> dict[str, Any]:
    """The elements of a Patient the row does not hold: other names, addresses, contacts…"""
    out = unmapped(resource, MODELLED)
    official = _official_name(resource)
    lists = {
        "name": [n for n in resource.get("name") or [] if n != official],
        "address": list((resource.get("address") or [])[1:]),
        "contact": list((resource.get("contact") or [])[1:]),
        "telecom": _other_telecoms(resource),
        "communication": [
            c for c in resource.get("communication") or [] if c != _mapped_communication(resource)
        ],
        "link": [link for link in resource.get("link") or [] if link.get("type") != "replaced-by"],
    }
    out.update({k: v for k, v in lists.items() if v})
    if partial := _partial_birth_date(resource):
        out["birthDate"] = partial
    return out


def _other_telecoms(resource: dict[str, Any]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for point in resource.get("telecom") or []:
        system = point.get("system")
        if system in ("phone", "email") and point.get("value") and system not in seen:
            seen.add(system)
            continue
        out.append(point)
    return out


def _mapped_communication(resource: dict[str, Any]) -> dict[str, Any] | None:
    chosen = None
    for comm in resource.get("communication") or []:
        if (comm.get("language") or {}).get("coding") and (comm.get("preferred") or chosen is None):
            chosen = comm
    return chosen
