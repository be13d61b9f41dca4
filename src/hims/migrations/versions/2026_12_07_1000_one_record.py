"""One record: each domain row carries what FHIR clients sent beyond it, and one version.

The domain tables of the FHIR-mapped types become the record itself (docs/architecture.md, "One
record"): the FHIR store holds their rendering, written in the same statement as the row. So a row
now keeps

* ``extra`` (jsonb): the elements of the FHIR resource the row does not model (other names,
  foreign extensions, ...), as the mapping's ``extra()`` extracts them, so the rendering of a row
  written through REST keeps what a FHIR client sent;
* ``version``: the one version counter of the record, which the FHIR versionId and every ETag
  show (observations and documents had none);
* ``deleted_at`` where a delete is a retirement (facilities, departments, practitioners,
  appointments, prescriptions, lab orders): the row stays, and its rendering is a tombstone.

A condition's code widens to 20 characters (SNOMED CT ids have up to 18 digits).

The data step copies, for rows that have a FHIR version, the extra elements of the stored version,
its version number when it is ahead of the row's, and the delete when the stored version is one.
It reads each mapped type's FHIR versions once, in id order.

Revision ID: 0013_one_record
Revises: 0004_identity, 0005_clinical_a, 0008_audit_time, 0011_fhir_idx_statistics, 0012_consultation_keys
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_one_record"
#: Every head before it: from here on the history is one line.
down_revision: str | Sequence[str] | None = (
    "0004_identity",
    "0005_clinical_a",
    "0008_audit_time",
    "0011_fhir_idx_statistics",
    "0012_consultation_keys",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Table → FHIR type of the record.
RECORDS = {
    "patients": "Patient",
    "facilities": "Organization",
    "departments": "Location",
    "practitioners": "Practitioner",
    "appointments": "Appointment",
    "consultations": "Encounter",
    "observations": "Observation",
    "conditions": "Condition",
    "allergies": "AllergyIntolerance",
    "prescriptions": "MedicationRequest",
    "lab_orders": "ServiceRequest",
    "documents": "DocumentReference",
}
NEW_VERSION = ("observations", "documents")
NEW_DELETED_AT = ("facilities", "departments", "practitioners", "appointments", "prescriptions", "lab_orders")
#: Elements of a resource the store owns, never part of ``extra``.
OWN = ("resourceType", "id", "meta", "text")


def _extra(resource_type: str, resource: dict[str, Any]) -> dict[str, Any] | None:
    """What the mapping of ``resource_type`` does not model (its ``extra()``), None when nothing."""
    from hims.fhir.mappings import (
        allergy_intolerance,
        appointment,
        condition,
        document_reference,
        encounter,
        lab,
        medication_request,
        observation,
        patient,
    )

    modules = {
        "Patient": patient,
        "Appointment": appointment,
        "Encounter": encounter,
        "Observation": observation,
        "Condition": condition,
        "AllergyIntolerance": allergy_intolerance,
        "MedicationRequest": medication_request,
        "ServiceRequest": lab,
        "DocumentReference": document_reference,
    }
    module = modules.get(resource_type)
    # Organization, Location and Practitioner keep the whole resource beyond what the store owns.
    found = {k: v for k, v in resource.items() if k not in OWN} if module is None else module.extra(resource)  # noqa: S610
    return found or None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for table in RECORDS:
        op.add_column(table, sa.Column("extra", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    for table in NEW_VERSION:
        op.add_column(table, sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    for table in NEW_DELETED_AT:
        op.add_column(table, sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    # A SNOMED CT concept id has up to 18 digits (a problem from a FHIR client is one of those).
    op.alter_column("conditions", "code", type_=sa.String(20), existing_type=sa.String(10))
    bind = op.get_bind()
    for table, resource_type in RECORDS.items():
        key = "t.id::text"
        rows = bind.execute(
            sa.text(
                f"SELECT f.id, f.version_id, f.deleted, h.resource::text AS resource "  # noqa: S608
                f"FROM fhir_resources f JOIN {table} t ON {key} = f.id "
                "LEFT JOIN LATERAL (SELECT resource FROM fhir_resource_history x WHERE x.resource_type = "
                "f.resource_type AND x.id = f.id AND x.resource IS NOT NULL ORDER BY x.version_id DESC "
                "LIMIT 1) h ON true WHERE f.resource_type = :type ORDER BY f.id"
            ),
            {"type": resource_type},
        ).all()
        for found in rows:
            extra = _extra(resource_type, orjson.loads(found.resource)) if found.resource else None
            sets = ["version = greatest(version, :version)"]
            if extra is not None:
                sets.append("extra = CAST(:extra AS jsonb)")
            if found.deleted and table in NEW_DELETED_AT:
                sets.append("deleted_at = coalesce(deleted_at, now())")
            bind.execute(
                sa.text(f"UPDATE {table} SET {', '.join(sets)} WHERE id = CAST(:id AS uuid)"),  # noqa: S608
                {"version": found.version_id, "extra": orjson.dumps(extra).decode(), "id": found.id},
            )


def downgrade() -> None:
    op.alter_column("conditions", "code", type_=sa.String(10), existing_type=sa.String(20))
    for table in NEW_DELETED_AT:
        op.drop_column(table, "deleted_at")
    for table in NEW_VERSION:
        op.drop_column(table, "version")
    for table in RECORDS:
        op.drop_column(table, "extra")
