"""Roles and the permission matrix: the one place that says who may do what.

Every route declares one permission through `hims.core.security.require`; `docs/security.md`
renders this matrix (a test keeps the two equal).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Staff roles."""

    ADMIN = "admin"
    PHYSICIAN = "physician"
    NURSE = "nurse"
    RECEPTIONIST = "receptionist"
    ANALYST = "analyst"
    COMPLIANCE = "compliance"
    OPERATOR = "operator"


#: Every permission with what it allows.
PERMISSIONS: dict[str, str] = {
    "patient:read": "Read patient demographics and charts",
    "patient:write": "Register and update patients",
    "patient:merge": "Merge duplicate patient records",
    "appointment:read": "See appointments",
    "appointment:write": "Book, reschedule, cancel and check in appointments",
    "consultation:read": "Read consultations and clinical notes",
    "consultation:write": "Start and document consultations",
    "consultation:sign": "Sign consultations and write amendments",
    "clinical:read": "Read vitals, problems, allergies, prescriptions, labs and documents",
    "clinical:write": "Record vitals, problems, allergies, labs and documents",
    "prescription:write": "Prescribe and override allergy warnings",
    "practitioner:read": "See practitioners, facilities and departments",
    "practitioner:write": "Manage practitioners, facilities and departments",
    "fhir:read": "Read through the FHIR API",
    "fhir:write": "Write through the FHIR API",
    "fhir:export": "Run FHIR bulk exports",
    "analytics:read": "De-identified dashboards and exports",
    "audit:read": "Read the PHI access log and security events",
    "user:read": "See staff accounts",
    "user:admin": "Create, disable and unlock staff accounts, assign roles, reset MFA",
    "ops:read": "See operational status (metrics, jobs, incidents)",
    "ops:backup": "Run backups and restores",
    "ops:admin": "Feature flags, maintenance and deploy operations",
    "self": "Manage one's own account (profile, password, MFA)",
}

_CLINICAL_READ = {
    "patient:read",
    "appointment:read",
    "consultation:read",
    "clinical:read",
    "practitioner:read",
    "fhir:read",
}

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset(
        {
            "user:read",
            "user:admin",
            "practitioner:read",
            "practitioner:write",
            "ops:read",
            "ops:admin",
            "audit:read",
            "self",
        }
    ),
    Role.PHYSICIAN: frozenset(
        _CLINICAL_READ
        | {
            "patient:write",
            "appointment:write",
            "consultation:write",
            "consultation:sign",
            "clinical:write",
            "prescription:write",
            "fhir:write",
            "self",
        }
    ),
    Role.NURSE: frozenset(
        _CLINICAL_READ
        | {"patient:write", "appointment:write", "consultation:write", "clinical:write", "self"}
    ),
    Role.RECEPTIONIST: frozenset(
        {
            "patient:read",
            "patient:write",
            "patient:merge",
            "appointment:read",
            "appointment:write",
            "practitioner:read",
            "self",
        }
    ),
    Role.ANALYST: frozenset({"analytics:read", "self"}),
    Role.COMPLIANCE: frozenset({"audit:read", "user:read", "patient:read", "self"}),
    Role.OPERATOR: frozenset({"ops:read", "ops:backup", "ops:admin", "fhir:export", "self"}),
}


def permissions_for(roles: frozenset[str] | set[str] | list[str]) -> frozenset[str]:
    """Union of the permissions of ``roles`` (unknown roles grant nothing)."""
    granted: set[str] = set()
    for role in roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(role)]
        except ValueError:
            continue
    return frozenset(granted)


assert all(p in PERMISSIONS for perms in ROLE_PERMISSIONS.values() for p in perms)
