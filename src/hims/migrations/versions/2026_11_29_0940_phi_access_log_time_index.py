"""PHI access log: an (occurred_at, id) index for time-bounded reads of the whole log.

Compliance queries ("who touched anything between T1 and T2") and AuditEvent searches without
`patient`/`agent` filter on ``occurred_at`` and page in (occurred_at, id) order (keyset
pagination, newest first by default); the existing indexes lead with patient_id or user_id, so
those queries sorted the whole log. This index serves the range, the order and the keyset.

Built with CREATE INDEX CONCURRENTLY: a plain CREATE INDEX holds a SHARE lock on the table for
the whole build, blocking every insert into the log, and every PHI read writes a log row. A
concurrent build that failed leaves an INVALID index behind; the upgrade drops it and builds again.

Revision ID: 0008_audit_time
Revises: 0002_audit
Create Date: 2026-11-29 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_audit_time"
down_revision: str | Sequence[str] | None = "0002_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_phi_access_log_time"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        valid = (
            op.get_bind()
            .execute(
                sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:n)"), {"n": INDEX}
            )
            .scalar()
        )
        if valid is False:  # left behind by an interrupted concurrent build
            op.drop_index(INDEX, table_name="phi_access_log", postgresql_concurrently=True)
        op.create_index(
            INDEX,
            "phi_access_log",
            ["occurred_at", "id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="phi_access_log", postgresql_concurrently=True, if_exists=True)
