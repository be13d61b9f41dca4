"""Platform: PostgreSQL extensions the domains rely on.

Revision ID: 0001_platform
Revises:
Create Date: 2026-11-29 07:00:00
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0001_platform"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Contrib extensions: created when the server has them; `hims db verify` lists any missing one.
EXTENSIONS = ("pg_trgm", "fuzzystrmatch", "btree_gist", "unaccent", "pgcrypto")


def upgrade() -> None:
    conn = op.get_bind()
    available = {row[0] for row in conn.execute(text("SELECT name FROM pg_available_extensions"))}
    for name in EXTENSIONS:
        if name in available:
            op.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"')


def downgrade() -> None:
    # Extensions may be shared with other schemas; leaving them is harmless.
    pass
