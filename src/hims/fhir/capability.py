"""The CapabilityStatement, generated from the registry (what we advertise is what we run)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hims import __version__
from hims.fhir.registry import SPECIAL_PARAMS, TYPES

#: Operations per type and at system level.
TYPE_OPERATIONS = {
    "Patient": [("everything", "Patient/$everything"), ("export", "Patient/$export")],
    "Group": [("export", "Group/[id]/$export")],
}
SYSTEM_OPERATIONS = [("export", "$export")]
NOT_SERVED = {"OperationOutcome", "Parameters"}


def capability_statement(base_url: str) -> dict[str, Any]:
    """A valid R4 CapabilityStatement for this server."""
    resources: list[dict[str, Any]] = []
    for name, type_def in sorted(TYPES.items()):
        if name in NOT_SERVED:
            continue
        stored = type_def.source is None  # the versioned JSONB store (else read-only from a table)
        special = list(SPECIAL_PARAMS.values()) if stored else [SPECIAL_PARAMS["_id"]]
        params = [
            {
                "name": p.name,
                "type": p.type,
                "documentation": p.documentation or f"{p.type} on {', '.join(p.paths)}",
            }
            for p in [*special, *sorted(type_def.params.values(), key=lambda x: x.name)]
        ]
        ref_params = sorted(p.name for p in type_def.params.values() if p.type == "reference")
        entry: dict[str, Any] = {
            "type": name,
            "interaction": [{"code": code} for code in type_def.interactions],
            "versioning": "versioned" if stored else "no-version",
            "readHistory": stored,
            "updateCreate": stored,
            "conditionalCreate": stored,
            "conditionalUpdate": stored,
            "conditionalDelete": "not-supported",
            "searchInclude": [f"{name}:{p}" for p in ref_params] if stored else [],
            "searchRevInclude": [],
            "searchParam": params,
        }
        if not stored:
            entry["documentation"] = (
                f"Read-only, rendered from {type_def.source}; needs the {type_def.read_permission} "
                "permission. Writes answer 405."
            )
        ops = TYPE_OPERATIONS.get(name)
        if ops:
            entry["operation"] = [
                {"name": n, "definition": f"{base_url}/OperationDefinition/{n}"} for n, _ in ops
            ]
        resources.append(entry)
    rev: dict[str, list[str]] = {}
    for name, type_def in TYPES.items():
        if type_def.source is not None:
            continue
        for p in type_def.params.values():
            if p.type == "reference":
                for target in p.targets or ():
                    rev.setdefault(target, []).append(f"{name}:{p.name}")
    for entry in resources:
        entry["searchRevInclude"] = sorted(rev.get(entry["type"], []))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "publisher": "AROCORD",
        "kind": "instance",
        "software": {"name": "AROCORD-HIMS", "version": __version__},
        "implementation": {"description": "AROCORD-HIMS FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer tokens from /api/v1/auth; scopes as in docs/fhir.md.",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                "operation": [
                    {"name": n, "definition": f"{base_url}/OperationDefinition/{n}"}
                    for n, _ in SYSTEM_OPERATIONS
                ],
            }
        ],
    }
