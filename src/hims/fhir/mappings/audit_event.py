"""AuditEvent ← ``phi_access_log`` row (read-only: the log is append-only, never written via FHIR)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from hims.fhir.mappings._common import HIMS, drop_empty

_ACTION = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "search": "E",
    "history": "R",
    "everything": "E",
    "export": "E",
    "update": "U",
    "delete": "D",
}
_OUTCOME = {"success": "0", "denied": "4", "error": "8"}


def to_resource(row: dict[str, Any]) -> dict[str, Any]:
    """A FHIR AuditEvent (REST event) from one PHI access log row."""
    entities: list[dict[str, Any]] = []
    if row.get("patient_id"):
        entities.append(
            {
                "what": {"reference": f"Patient/{row['patient_id']}"},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
            }
        )
    if row.get("resource_id"):
        entities.append(
            {
                "what": {"reference": row["resource_id"]}
                if "/" in str(row["resource_id"])
                else {"display": row["resource_id"]},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            }
        )
    occurred = row["occurred_at"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return drop_empty(
        {
            "resourceType": "AuditEvent",
            "id": str(row["id"]),
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": f"{HIMS}/CodeSystem/phi-action", "code": row["action"]}],
            "action": _ACTION.get(str(row["action"]), "E"),
            "recorded": occurred,
            "outcome": _OUTCOME.get(str(row.get("outcome", "success")), "8"),
            "agent": [
                drop_empty(
                    {
                        "who": drop_empty(
                            {
                                "identifier": {"system": f"{HIMS}/sid/user", "value": str(row["user_id"])}
                                if row.get("user_id")
                                else None,
                                "display": row.get("username"),
                            }
                        ),
                        "requestor": True,
                        "network": {"address": str(row["ip_address"]), "type": "2"}
                        if row.get("ip_address")
                        else None,
                    }
                )
            ],
            "source": {"observer": {"display": f"AROCORD-HIMS ({row.get('channel', 'api')})"}},
            "entity": entities,
        }
    )
