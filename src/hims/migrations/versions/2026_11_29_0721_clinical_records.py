"""Clinical records: consultations (partitioned by year), amendments, observations, conditions,
allergies, prescriptions and allergy overrides, lab orders.

Revision ID: 0006_clinical_b
Revises: 0003_clinical_base
Create Date: 2026-11-29 07:21:25.244436
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006_clinical_b"
down_revision: str | Sequence[str] | None = "0003_clinical_base"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "allergies",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("substance", sa.String(length=200), nullable=False),
        sa.Column("code_system", sa.String(length=64), nullable=True),
        sa.Column("code", sa.String(length=20), nullable=True),
        sa.Column("reaction", sa.String(length=300), nullable=True),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.UUID(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_allergies_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allergies")),
    )
    op.create_index("ix_allergies_patient_status", "allergies", ["patient_id", "status"], unique=False)
    op.create_table(
        "conditions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("consultation_id", sa.UUID(), nullable=True),
        sa.Column("code_system", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=10), nullable=False),
        sa.Column("display", sa.String(length=300), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=True),
        sa.Column("abatement_date", sa.Date(), nullable=True),
        sa.Column("clinical_status", sa.String(length=16), nullable=False),
        sa.Column("verification_status", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.UUID(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_conditions_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conditions")),
    )
    op.create_index(
        "ix_conditions_patient_status", "conditions", ["patient_id", "clinical_status"], unique=False
    )
    op.create_table(
        "lab_orders",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("consultation_id", sa.UUID(), nullable=True),
        sa.Column("code_system", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("display", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("ordered_by", sa.UUID(), nullable=True),
        sa.Column("ordered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resulted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_value", sa.Numeric(precision=14, scale=4), nullable=True),
        sa.Column("result_unit", sa.String(length=30), nullable=True),
        sa.Column("reference_low", sa.Numeric(precision=14, scale=4), nullable=True),
        sa.Column("reference_high", sa.Numeric(precision=14, scale=4), nullable=True),
        sa.Column("abnormal_flag", sa.String(length=2), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_lab_orders_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lab_orders")),
    )
    op.create_index("ix_lab_orders_patient_ordered", "lab_orders", ["patient_id", "ordered_at"], unique=False)
    op.create_table(
        "observations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("consultation_id", sa.UUID(), nullable=True),
        sa.Column("group_id", sa.UUID(), nullable=False),
        sa.Column("code_system", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("display", sa.String(length=120), nullable=False),
        sa.Column("value", sa.Numeric(precision=10, scale=3), nullable=False),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("interpretation", sa.String(length=4), nullable=True),
        sa.Column("reference_low", sa.Numeric(precision=10, scale=3), nullable=True),
        sa.Column("reference_high", sa.Numeric(precision=10, scale=3), nullable=True),
        sa.Column("derived", sa.Boolean(), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_observations_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
    )
    op.create_index(
        "ix_observations_patient_code_time",
        "observations",
        ["patient_id", "code", "effective_at"],
        unique=False,
    )
    op.create_table(
        "prescriptions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("consultation_id", sa.UUID(), nullable=True),
        sa.Column("drug_name", sa.String(length=200), nullable=False),
        sa.Column("rxnorm_code", sa.String(length=20), nullable=True),
        sa.Column("dose_value", sa.Numeric(precision=12, scale=4), nullable=False),
        sa.Column("dose_unit", sa.String(length=20), nullable=False),
        sa.Column("route", sa.String(length=40), nullable=True),
        sa.Column("frequency", sa.String(length=60), nullable=True),
        sa.Column("duration_days", sa.Integer(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("prescribed_by", sa.UUID(), nullable=True),
        sa.Column("prescribed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_prescriptions_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescriptions")),
    )
    op.create_index(
        "ix_prescriptions_patient_status", "prescriptions", ["patient_id", "status"], unique=False
    )
    op.create_table(
        "allergy_overrides",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("prescription_id", sa.UUID(), nullable=False),
        sa.Column("allergy_id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("substance", sa.String(length=200), nullable=False),
        sa.Column("match", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("overridden_by", sa.UUID(), nullable=True),
        sa.Column("overridden_by_name", sa.String(length=150), nullable=False),
        sa.Column("overridden_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["allergy_id"],
            ["allergies.id"],
            name=op.f("fk_allergy_overrides_allergy_id_allergies"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_allergy_overrides_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_allergy_overrides_prescription_id_prescriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allergy_overrides")),
    )
    op.create_index(
        op.f("ix_allergy_overrides_prescription_id"), "allergy_overrides", ["prescription_id"], unique=False
    )
    # Partitioned tables cannot be autogenerated: the DDL is written by hand (guide §9.1).
    # The partition key must be part of the primary key, hence (id, started_at).
    op.execute(
        """
        CREATE TABLE consultations (
            id uuid NOT NULL,
            started_at timestamptz NOT NULL,
            patient_id uuid NOT NULL,
            practitioner_id uuid,
            appointment_id uuid,
            kind varchar(16) NOT NULL,
            status varchar(16) NOT NULL,
            reason text,
            subjective text,
            objective text,
            assessment text,
            plan text,
            finished_at timestamptz,
            signed_at timestamptz,
            started_by uuid,
            signed_by uuid,
            version integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_consultations PRIMARY KEY (id, started_at),
            CONSTRAINT fk_consultations_patient_id_patients FOREIGN KEY (patient_id)
                REFERENCES patients (id) ON DELETE RESTRICT,
            CONSTRAINT fk_consultations_practitioner_id_practitioners FOREIGN KEY (practitioner_id)
                REFERENCES practitioners (id) ON DELETE RESTRICT
        ) PARTITION BY RANGE (started_at)
        """
    )
    op.create_index("ix_consultations_id", "consultations", ["id"], unique=False)
    op.create_index(
        "ix_consultations_appointment_id",
        "consultations",
        ["appointment_id"],
        unique=False,
        postgresql_where=sa.text("appointment_id IS NOT NULL"),
    )
    op.create_index(
        "ix_consultations_patient_started", "consultations", ["patient_id", "started_at"], unique=False
    )
    # No DEFAULT partition on purpose: a row for a year nobody prepared fails loudly instead of
    # piling up in a catch-all that later blocks creating that year's partition. This year and
    # the next two are created here; `hims db partitions ensure` (also run after every
    # `hims db migrate`) keeps creating them ahead.
    this_year = datetime.now(UTC).year
    for year in range(this_year, this_year + 3):
        op.execute(
            f"CREATE TABLE IF NOT EXISTS consultations_y{year} PARTITION OF consultations "
            f"FOR VALUES FROM ('{year}-01-01 00:00:00+00') TO ('{year + 1}-01-01 00:00:00+00')"
        )
    op.create_table(
        "consultation_amendments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("consultation_id", sa.UUID(), nullable=False),
        sa.Column("consultation_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("author_user_id", sa.UUID(), nullable=True),
        sa.Column("author_name", sa.String(length=150), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id", "consultation_started_at"],
            ["consultations.id", "consultations.started_at"],
            name="fk_consultation_amendments_consultation",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_consultation_amendments_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultation_amendments")),
    )
    op.create_index(
        "ix_consultation_amendments_consultation",
        "consultation_amendments",
        ["consultation_id", "consultation_started_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_consultation_amendments_patient_id"), "consultation_amendments", ["patient_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_consultation_amendments_patient_id"), table_name="consultation_amendments")
    op.drop_index("ix_consultation_amendments_consultation", table_name="consultation_amendments")
    op.drop_table("consultation_amendments")
    op.drop_index("ix_consultations_patient_started", table_name="consultations")
    op.drop_index("ix_consultations_appointment_id", table_name="consultations")
    op.drop_index("ix_consultations_id", table_name="consultations")
    op.drop_table("consultations")  # drops every partition with it
    op.drop_index(op.f("ix_allergy_overrides_prescription_id"), table_name="allergy_overrides")
    op.drop_table("allergy_overrides")
    op.drop_index("ix_prescriptions_patient_status", table_name="prescriptions")
    op.drop_table("prescriptions")
    op.drop_index("ix_observations_patient_code_time", table_name="observations")
    op.drop_table("observations")
    op.drop_index("ix_lab_orders_patient_ordered", table_name="lab_orders")
    op.drop_table("lab_orders")
    op.drop_index("ix_conditions_patient_status", table_name="conditions")
    op.drop_table("conditions")
    op.drop_index("ix_allergies_patient_status", table_name="allergies")
    op.drop_table("allergies")
