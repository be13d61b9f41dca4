"""Imports every domain's models so `Base.metadata` is complete (Alembic, verify, tests).

Each domain adds one `import hims.<domain>.models` line here, in dependency order.
"""

import hims.audit.models
import hims.clinical.models
import hims.consultations.models
import hims.documents.models
import hims.fhir.models
import hims.identity.models
import hims.patients.models
import hims.practitioners.models
import hims.scheduling.models
from hims.core.db import Base

metadata = Base.metadata

__all__ = ["metadata"]
