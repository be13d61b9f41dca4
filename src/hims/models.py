"""Imports every domain's models so `Base.metadata` is complete (Alembic, verify, tests).

Each domain adds one `import hims.<domain>.models` line here, in dependency order.
"""

from hims.core.db import Base

metadata = Base.metadata

__all__ = ["metadata"]
