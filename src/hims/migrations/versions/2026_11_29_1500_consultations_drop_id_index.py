"""consultations: drop ``ix_consultations_id``, which the primary key already provides.

The primary key is ``(id, started_at)`` (a partitioned table's key must hold the partition
column), and its B-tree answers ``WHERE id = …`` through its leading column just as the
single-column index did. The extra index cost every consultation write a B-tree insert and
every new yearly partition one more index build, which PostgreSQL 15 syncs to disk (about a
fifth of the ~20 ms a partition takes; a Synthea import creates dozens).

Dropping the partitioned index drops the partitions' indexes with it, holding each table's
ACCESS EXCLUSIVE lock for the catalog change only (milliseconds; DROP INDEX CONCURRENTLY does
not apply to partitioned indexes). The previous release never names the index. The downgrade
builds it again (CREATE INDEX on a partitioned table blocks writes to consultations while it
builds: run it off-peak).

Revision ID: 0010_consultations_id_index
Revises: 0006_clinical_b
Create Date: 2026-11-29 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_consultations_id_index"
down_revision: str | Sequence[str] | None = "0006_clinical_b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fail fast rather than queue every query on the table behind a lock held by a long
    # transaction; `hims db migrate` can simply be run again (docs/operations.md).
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index("ix_consultations_id", table_name="consultations", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_consultations_id", "consultations", ["id"], unique=False, if_not_exists=True)
