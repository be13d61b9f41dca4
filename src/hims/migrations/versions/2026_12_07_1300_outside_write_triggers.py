"""outside_write_triggers: writes to patient data from outside the application are logged.

Attaches ``hims_log_outside_write()`` (migration 0015_audit_chain) to every table holding patient
data (the list is frozen here; `hims.audit.outside_writes.PHI_TABLES` is the live one a test checks
against the migrated schema): an INSERT, UPDATE or DELETE made without the
application's per-transaction ``hims.actor`` setting (psql, a later migration, a script) becomes a
``phi_access_log`` row with channel ``db``. The application sets ``hims.actor`` in the statement
of every write it makes (`hims.core.records.write`), and logs those writes itself.

CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock on each table for the catalog change only; on the
partitioned ``consultations`` it is cloned to every partition, present and future.

Revision ID: 0016_outside_write_triggers
Revises: 0015_audit_chain
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence

from alembic import op

from hims.audit.outside_writes import outside_write_trigger_ddl, trigger_name

revision: str = "0016_outside_write_triggers"
down_revision: str | Sequence[str] | None = "0015_audit_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table → (resource type logged, column holding the patient id), as of this revision.
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


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for table, (resource_type, patient_column) in PHI_TABLES.items():
        op.execute(outside_write_trigger_ddl(table, resource_type, patient_column))


def downgrade() -> None:
    for table in PHI_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger_name(table)} ON {table}")
