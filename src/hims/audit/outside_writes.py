"""Logging writes to patient data made outside the application (psql, a migration, a script).

The application sets ``hims.actor`` for the transaction (``set_config('hims.actor', <account uuid
or 'system:<name>'>, true)``) in every transaction through which it writes patient data, and logs
those writes itself. A row trigger on each PHI table, calling the database function
``hims_log_outside_write()`` (migration 0015_audit_chain), logs every other INSERT, UPDATE and
DELETE as one ``phi_access_log`` row: ``channel`` 'db', ``username`` the session user, no
``user_id``. Its WHEN clause skips the call entirely when ``hims.actor`` is set, so the
application's own writes pay nothing. See docs/audit.md.
"""

from __future__ import annotations

import re

#: table → (resource type logged, column holding the patient id).
PHI_TABLES: dict[str, tuple[str, str]] = {
    "patients": ("Patient", "id"),
    "appointments": ("Appointment", "patient_id"),
    "consultations": ("Encounter", "patient_id"),
    "consultation_amendments": ("ConsultationAmendment", "patient_id"),
    "observations": ("Observation", "patient_id"),
    "conditions": ("Condition", "patient_id"),
    "allergies": ("AllergyIntolerance", "patient_id"),
    "allergy_overrides": ("AllergyOverride", "patient_id"),
    "prescriptions": ("MedicationRequest", "patient_id"),
    "lab_orders": ("ServiceRequest", "patient_id"),
    "documents": ("DocumentReference", "patient_id"),
}

#: `current_setting(..., true)` is NULL in a session that never set it, and '' in one that set it
#: in an earlier transaction (SET LOCAL leaves the placeholder behind): both mean "not the app".
ACTOR_UNSET = "coalesce(current_setting('hims.actor', true), '') = ''"

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_RESOURCE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def trigger_name(table: str) -> str:
    """The outside-write trigger's name on ``table``."""
    return f"{table}_outside_write"


def outside_write_trigger_ddl(table: str, resource_type: str, patient_column: str) -> str:
    """CREATE TRIGGER attaching ``hims_log_outside_write(resource_type, patient_column)`` to ``table``
    (AFTER INSERT OR UPDATE OR DELETE, each row, only when ``hims.actor`` is unset)."""
    for name in (table, patient_column):
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    if not _RESOURCE_TYPE.fullmatch(resource_type):
        raise ValueError(f"not a resource type name: {resource_type!r}")
    return (
        f"CREATE TRIGGER {trigger_name(table)} AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW WHEN ({ACTOR_UNSET}) "
        f"EXECUTE FUNCTION hims_log_outside_write('{resource_type}', '{patient_column}')"
    )
