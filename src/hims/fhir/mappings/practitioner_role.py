"""``practitioners`` row → PractitionerRole (read-only: where the practitioner works, as what).

A practitioner's placement is two columns of the row (``facility_id``, ``department_id``), not a
record of its own, so the role is derived: one PractitionerRole per practitioner, sharing its id,
written by the domain → FHIR side whenever the row changes. ``code`` is the profession and
``specialty`` the specialty, both as text in our code systems.
"""

from __future__ import annotations

from typing import Any

from hims.fhir.mappings._common import HIMS, drop_empty, ref, telecoms

PROFESSION_SYSTEM = f"{HIMS}/CodeSystem/profession"


def from_practitioner(row: dict[str, Any]) -> dict[str, Any]:
    """The PractitionerRole of a ``practitioners`` row (id = the practitioner's id)."""
    location = ref("Location", row.get("department_id"))
    return drop_empty(
        {
            "resourceType": "PractitionerRole",
            "id": str(row["id"]),
            "active": row.get("active", True),
            "practitioner": ref("Practitioner", row["id"]),
            "organization": ref("Organization", row.get("facility_id")),
            "location": [location] if location else [],
            "code": [
                {
                    "coding": [{"system": PROFESSION_SYSTEM, "code": row["profession"]}],
                    "text": row["profession"],
                }
            ]
            if row.get("profession")
            else [],
            "specialty": [{"text": row["specialty"]}] if row.get("specialty") else [],
            "telecom": telecoms(row.get("phone"), row.get("email")),
        }
    )
