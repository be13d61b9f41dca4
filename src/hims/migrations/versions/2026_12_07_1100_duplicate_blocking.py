"""duplicate_blocking: find patients by national id whatever its spelling.

Duplicate detection compares national ids as letters and digits only, upper-case ("999-56-2023"
is "999562023"). ``hims_national_id_keys(identifiers)`` is that key for every identifier of type
``national_id``; a GIN index on it (live patients only, as the other search indexes) lets the
duplicate check find a patient by any spelling of the id with ``&&``. The jsonb index
``ix_patients_identifiers`` only answers exact containment.

The function needs no extension. Building the index reads the table once; it is a plain
CREATE INDEX (a SHARE lock: writes to patients wait while it builds, reads do not).

Revision ID: 0014_duplicate_blocking
Revises: 0013_one_record
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_duplicate_blocking"
down_revision: str | Sequence[str] | None = "0013_one_record"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# IMMUTABLE so an index may use it; identifiers that are not objects, or have no type, yield nothing.
NATIONAL_ID_KEYS_SQL = r"""
CREATE OR REPLACE FUNCTION hims_national_id_keys(identifiers jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
  SELECT coalesce(array_agg(DISTINCT upper(regexp_replace(e ->> 'value', '[^[:alnum:]]+', '', 'g'))), '{}')
  FROM jsonb_array_elements(CASE jsonb_typeof(identifiers) WHEN 'array' THEN identifiers ELSE '[]' END) AS e
  WHERE jsonb_typeof(e) = 'object' AND e ->> 'type' = 'national_id' AND e ->> 'value' IS NOT NULL
$fn$
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(NATIONAL_ID_KEYS_SQL)
    op.execute(
        "CREATE INDEX ix_patients_national_id_keys ON patients "
        "USING gin (hims_national_id_keys(identifiers)) "
        "WHERE deleted_at IS NULL AND merged_into_id IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_patients_national_id_keys")
    op.execute("DROP FUNCTION IF EXISTS hims_national_id_keys(jsonb)")
