"""Imports every domain's models so `Base.metadata` is complete (Alembic, verify, tests)."""

from hims.core.db import Base

# Domain model modules register their tables on import; keep this list in dependency order.
# (Each domain adds its `models` import here.)

metadata = Base.metadata

__all__ = ["metadata"]
