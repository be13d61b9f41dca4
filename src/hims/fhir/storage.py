"""The per-type storage seam.

Every type is stored in the versioned JSONB store in this release. When a domain service (patients,
consultations...) is ready to own a type, register a `Storage` for it here that maps through
``hims.fhir.mappings`` to the domain tables, and the FHIR API and the REST API see the same rows.
"""

from __future__ import annotations

from typing import Literal

StorageKind = Literal["jsonb", "domain"]

#: Storage per resource type; anything absent uses the JSONB store.
STORAGE: dict[str, StorageKind] = {}


def storage_for(resource_type: str) -> StorageKind:
    """Where ``resource_type`` lives (always "jsonb" until a domain mapping is switched on)."""
    return STORAGE.get(resource_type, "jsonb")
