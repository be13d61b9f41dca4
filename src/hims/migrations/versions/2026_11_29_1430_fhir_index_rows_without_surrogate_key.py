"""FHIR search index tables: drop the surrogate ``pk`` column and its primary key.

The index rows of a resource are derived data: every version deletes them by ``rid`` and writes
them again, and nothing addresses a single row. The ``pk`` identity column cost every row a
sequence call and a B-tree insert (13-17 % of the write statement of a Synthea import). The
``rid`` index that serves the deletes and the search indexes stay.

Rewrites nothing: dropping a column and a constraint only changes the catalog (the column's
space is reclaimed as rows are rewritten); each table's ACCESS EXCLUSIVE lock is held for
milliseconds. The previous release never names ``pk`` (its inserts list their columns), so it
keeps working against the new schema during a blue-green switch. The downgrade adds the
identity column back, which numbers the existing rows.

Revision ID: 0009_fhir_idx_keys
Revises: 0007_fhir
Create Date: 2026-11-29 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_fhir_idx_keys"
down_revision: str | Sequence[str] | None = "0007_fhir"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("fhir_idx_token", "fhir_idx_string", "fhir_idx_date", "fhir_idx_reference", "fhir_idx_quantity")


def upgrade() -> None:
    # Fail fast rather than queue every query on the table behind a lock held by a long
    # transaction; `hims db migrate` can simply be run again (docs/operations.md).
    op.execute("SET LOCAL lock_timeout = '5s'")
    for table in TABLES:
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.drop_column(table, "pk")


def downgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("pk", sa.BigInteger(), sa.Identity(always=False), nullable=False))
        op.create_primary_key(f"pk_{table}", table, ["pk"])
