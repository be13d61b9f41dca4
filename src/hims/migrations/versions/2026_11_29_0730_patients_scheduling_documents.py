"""Patients search keys and MRN sequence; appointments (no double booking); documents.

Revision ID: 0005_clinical_a
Revises: 0003_clinical_base
Create Date: 2026-11-29 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_clinical_a"
down_revision: str | Sequence[str] | None = "0003_clinical_base"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# IMMUTABLE wrapper so generated columns and indexes may use it: lower-case, accents removed,
# spaces, dots, hyphens and apostrophes dropped ("O'Brien-Nunez" -> "obriennunez").
NAME_KEY_SQL = r"""
CREATE OR REPLACE FUNCTION hims_name_key(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$ SELECT regexp_replace(lower(UNACCENTED), '[[:space:].''-]+', '', 'g') $fn$
"""


def _extension_schema(name: str) -> str | None:
    query = sa.text("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = :n")
    row = op.get_bind().execute(query, {"n": name}).first()
    return str(row[0]) if row else None


# Without btree_gist (a PostgreSQL without contrib, e.g. the embedded wheel on a bare laptop) the
# exclusion constraint cannot be built; this trigger enforces the same rule. It serialises
# bookings per practitioner with a transaction advisory lock, then looks for an overlap with a
# fresh snapshot (READ COMMITTED), and fails with the exclusion constraint's own SQLSTATE and
# name so the service reports 409 double_booking either way. `hims db verify` still reports
# the missing extension.
NO_DOUBLE_BOOKING_TRIGGER = """
CREATE FUNCTION appointments_no_double_booking() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IN ('cancelled', 'no_show') THEN
    RETURN NEW;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('appointments:' || NEW.practitioner_id::text));
  IF EXISTS (
    SELECT 1 FROM appointments a
    WHERE a.practitioner_id = NEW.practitioner_id AND a.id <> NEW.id
      AND a.status NOT IN ('cancelled', 'no_show')
      AND tstzrange(a.starts_at, a.ends_at) && tstzrange(NEW.starts_at, NEW.ends_at)
  ) THEN
    RAISE EXCEPTION 'conflicting appointment for practitioner %', NEW.practitioner_id
      USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'ex_appointments_no_double_booking';
  END IF;
  RETURN NEW;
END $$;
--
CREATE TRIGGER appointments_no_double_booking BEFORE INSERT OR UPDATE ON appointments
  FOR EACH ROW EXECUTE FUNCTION appointments_no_double_booking();
"""


def upgrade() -> None:
    gist = _extension_schema("btree_gist") is not None
    unaccent = _extension_schema("unaccent")
    # Without unaccent (contrib missing) names are still lower-cased; `hims db verify` reports it.
    unaccented = f"{unaccent}.unaccent('{unaccent}.unaccent'::regdictionary, value)" if unaccent else "value"
    op.execute(NAME_KEY_SQL.replace("UNACCENTED", unaccented))
    op.execute("CREATE SEQUENCE IF NOT EXISTS patients_mrn_seq START WITH 100001")
    trigram = _extension_schema("pg_trgm") is not None
    op.create_table(
        "documents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("consultation_id", sa.UUID(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=300), nullable=False),
        sa.Column("uploaded_by", sa.UUID(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_documents_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_documents_storage_key")),
    )
    op.create_index(op.f("ix_documents_consultation_id"), "documents", ["consultation_id"], unique=False)
    op.create_index("ix_documents_patient_created", "documents", ["patient_id", "created_at"], unique=False)
    op.create_table(
        "appointments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("practitioner_id", sa.UUID(), nullable=False),
        sa.Column("facility_id", sa.UUID(), nullable=True),
        sa.Column("department_id", sa.UUID(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("booked_by", sa.UUID(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        *(
            [
                postgresql.ExcludeConstraint(
                    (sa.column("practitioner_id"), "="),
                    (sa.text("tstzrange(starts_at, ends_at)"), "&&"),
                    where=sa.text("status NOT IN ('cancelled', 'no_show')"),
                    using="gist",
                    name="ex_appointments_no_double_booking",
                )
            ]
            if gist
            else []
        ),
        sa.CheckConstraint(
            "status IN ('booked', 'checked_in', 'completed', 'cancelled', 'no_show')",
            name=op.f("ck_appointments_status"),
        ),
        sa.CheckConstraint("type IN ('in_person', 'telemedicine')", name=op.f("ck_appointments_type")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_appointments_ends_after_start")),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_appointments_department_id_departments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["facility_id"],
            ["facilities.id"],
            name=op.f("fk_appointments_facility_id_facilities"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_appointments_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioners.id"],
            name=op.f("fk_appointments_practitioner_id_practitioners"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    op.create_index(
        "ix_appointments_patient_starts", "appointments", ["patient_id", "starts_at"], unique=False
    )
    op.create_index(
        "ix_appointments_practitioner_starts", "appointments", ["practitioner_id", "starts_at"], unique=False
    )
    op.create_index("ix_appointments_starts_at", "appointments", ["starts_at"], unique=False)
    if not gist:
        for statement in NO_DOUBLE_BOOKING_TRIGGER.split("\n--\n"):
            op.execute(statement)
    op.add_column(
        "patients",
        sa.Column(
            "family_name_key",
            sa.String(length=200, collation="C"),
            sa.Computed("hims_name_key((family_name)::text)", persisted=True),
            nullable=False,
        ),
    )
    op.add_column(
        "patients",
        sa.Column(
            "given_name_key",
            sa.String(length=200, collation="C"),
            sa.Computed("hims_name_key((given_name)::text)", persisted=True),
            nullable=False,
        ),
    )
    op.add_column(
        "patients",
        sa.Column(
            "phone_digits",
            sa.String(length=32),
            sa.Computed("regexp_replace((phone)::text, '\\D'::text, ''::text, 'g'::text)", persisted=True),
            nullable=True,
        ),
    )
    op.add_column(
        "patients",
        sa.Column(
            "email_key",
            sa.String(length=254),
            sa.Computed("lower((email)::text)", persisted=True),
            nullable=True,
        ),
    )
    op.create_index("ix_patients_date_of_birth", "patients", ["date_of_birth"], unique=False)
    op.create_index("ix_patients_email_key", "patients", ["email_key"], unique=False)
    op.create_index(
        "ix_patients_family_given_key",
        "patients",
        ["family_name_key", "given_name_key", "id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL AND merged_into_id IS NULL"),
    )
    if trigram:
        op.create_index(
            "ix_patients_family_key_trgm",
            "patients",
            ["family_name_key"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"family_name_key": "gin_trgm_ops"},
        )
    op.create_index(
        "ix_patients_given_family_key",
        "patients",
        ["given_name_key", "family_name_key", "id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL AND merged_into_id IS NULL"),
    )
    if trigram:
        op.create_index(
            "ix_patients_given_key_trgm",
            "patients",
            ["given_name_key"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"given_name_key": "gin_trgm_ops"},
        )
    op.create_index(
        "ix_patients_identifiers",
        "patients",
        ["identifiers"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"identifiers": "jsonb_path_ops"},
    )
    op.create_index("ix_patients_merged_into_id", "patients", ["merged_into_id"], unique=False)
    op.create_index("ix_patients_phone_digits", "patients", ["phone_digits"], unique=False)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS appointments_no_double_booking ON appointments")
    op.execute("DROP FUNCTION IF EXISTS appointments_no_double_booking()")
    op.drop_index("ix_patients_phone_digits", table_name="patients")
    op.drop_index("ix_patients_merged_into_id", table_name="patients")
    op.drop_index(
        "ix_patients_identifiers",
        table_name="patients",
        postgresql_using="gin",
        postgresql_ops={"identifiers": "jsonb_path_ops"},
    )
    op.execute("DROP INDEX IF EXISTS ix_patients_given_key_trgm")
    op.drop_index(
        "ix_patients_given_family_key",
        table_name="patients",
        postgresql_where=sa.text("deleted_at IS NULL AND merged_into_id IS NULL"),
    )
    op.execute("DROP INDEX IF EXISTS ix_patients_family_key_trgm")
    op.drop_index(
        "ix_patients_family_given_key",
        table_name="patients",
        postgresql_where=sa.text("deleted_at IS NULL AND merged_into_id IS NULL"),
    )
    op.drop_index("ix_patients_email_key", table_name="patients")
    op.drop_index("ix_patients_date_of_birth", table_name="patients")
    op.drop_column("patients", "email_key")
    op.drop_column("patients", "phone_digits")
    op.drop_column("patients", "given_name_key")
    op.drop_column("patients", "family_name_key")
    op.drop_index("ix_appointments_starts_at", table_name="appointments")
    op.drop_index("ix_appointments_practitioner_starts", table_name="appointments")
    op.drop_index("ix_appointments_patient_starts", table_name="appointments")
    op.drop_table("appointments")
    op.drop_index("ix_documents_patient_created", table_name="documents")
    op.drop_index(op.f("ix_documents_consultation_id"), table_name="documents")
    op.drop_table("documents")
    op.execute("DROP SEQUENCE IF EXISTS patients_mrn_seq")
    op.execute("DROP FUNCTION IF EXISTS hims_name_key(text)")
