"""consultation_keys: each consultation's id → started_at, kept by a trigger.

``consultations`` is partitioned by year on ``started_at`` and its key is ``(id, started_at)``,
so a lookup by id alone probes every partition's key index (74 for a Synthea history: about half
a millisecond per lookup, on every FHIR write that references an Encounter and every REST read
of a consultation). With the partition key from this table PostgreSQL prunes to one partition at
execution. A row trigger on the partitioned table (cloned to every partition, present and
future) keeps it: an insert adds the key, a delete removes it, an update of ``started_at``
(within a partition, or moving the row, which PostgreSQL runs as a delete and an insert) moves
it. Its primary key makes an id unique across partitions, which the partitioned key cannot.

The backfill reads every consultation once; the table is small (two columns per consultation).
CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock on consultations and its partitions for the
catalog change only.

Revision ID: 0012_consultation_keys
Revises: 0010_consultations_id_index
Create Date: 2026-11-29 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_consultation_keys"
down_revision: str | Sequence[str] | None = "0010_consultations_id_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fail fast rather than queue every query on the table behind a lock held by a long
    # transaction; `hims db migrate` can simply be run again (docs/operations.md).
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "consultation_keys",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consultation_keys"),
    )
    op.execute(
        """
        CREATE FUNCTION consultation_keys_sync() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP IN ('DELETE', 'UPDATE') THEN
            DELETE FROM consultation_keys WHERE id = OLD.id AND started_at = OLD.started_at;
          END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO consultation_keys (id, started_at) VALUES (NEW.id, NEW.started_at);
          END IF;
          RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER consultation_keys_sync AFTER INSERT OR DELETE OR UPDATE OF id, started_at "
        "ON consultations FOR EACH ROW EXECUTE FUNCTION consultation_keys_sync()"
    )
    op.execute("INSERT INTO consultation_keys (id, started_at) SELECT id, started_at FROM consultations")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS consultation_keys_sync ON consultations")
    op.execute("DROP FUNCTION IF EXISTS consultation_keys_sync()")
    op.drop_table("consultation_keys")
