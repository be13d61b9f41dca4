"""Building one version to write: server meta, JSON text and search index (no SQL here)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from hims.fhir.extract import compartment_patient, extract
from hims.fhir.repository import Write

SERVER_META = ("versionId", "lastUpdated")


def _json_default(value: Any) -> Any:
    # Decimals come from domain rows (NUMERIC columns); written as they are, never through float.
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(resource: dict[str, Any]) -> str:
    """JSON text of a resource (Decimals kept exact)."""
    return orjson.dumps(resource, default=_json_default).decode()


def draft(
    resource: dict[str, Any], *, resource_type: str, id_: str, version_id: int, now: datetime, method: str
) -> Write:
    """Set id and server meta and find the compartment of one version; its JSON text and search
    index (which checks its dates) wait for `complete`: a domain record type renders and indexes
    its own version from its row instead."""
    resource["id"] = id_
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    meta = {k: v for k, v in meta.items() if k not in SERVER_META}
    resource["meta"] = {"versionId": str(version_id), "lastUpdated": iso(now), **meta}
    patient = compartment_patient(resource)
    return Write(
        resource_type=resource_type,
        id=id_,
        version_id=version_id,
        last_updated=now,
        method=method,
        resource="",
        patient_ref=f"Patient/{patient}" if patient else None,
        index=None,
        document=resource,
        pending=True,
    )


def complete(write: Write) -> Write:
    """Index and serialise a drafted version (no-op for one already complete)."""
    if write.pending:
        assert write.document is not None
        write.index = extract(write.document)
        write.resource, write.pending = dumps(write.document), False
    return write


def prepare(
    resource: dict[str, Any], *, resource_type: str, id_: str, version_id: int, now: datetime, method: str
) -> Write:
    """Set id and server meta, serialise, and extract the search index of one version."""
    return complete(
        draft(resource, resource_type=resource_type, id_=id_, version_id=version_id, now=now, method=method)
    )


@functools.lru_cache(maxsize=64)  # every version of a transaction has the same moment
def iso(moment: datetime) -> str:
    """FHIR instant text with milliseconds and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
