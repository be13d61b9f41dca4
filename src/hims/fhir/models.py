"""The FHIR resource store: current versions, every version, and the search index tables.

Patient compartment references and index targets are text ("Patient/123"): FHIR ids are not
UUIDs and Patient lives in this store for now (see docs/fhir.md, "domain-table seam").
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Identity,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from hims.core.db import Base


class FhirResource(Base):
    """The current version of every resource (deleted ones keep a tombstone for 410)."""

    __tablename__ = "fhir_resources"

    rid: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # "Patient/<id>" of the patient compartment the resource belongs to (None: no patient).
    patient_ref: Mapped[str | None] = mapped_column(String(140))
    resource: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        PrimaryKeyConstraint("resource_type", "id", name="pk_fhir_resources"),
        Index("ix_fhir_resources_type_rid", "resource_type", "rid"),
        Index("ix_fhir_resources_type_updated", "resource_type", "last_updated", "rid"),
        Index("ix_fhir_resources_patient_ref", "patient_ref", "rid"),
    )


class FhirResourceHistory(Base):
    """Every version ever written (``resource`` is NULL for a delete)."""

    __tablename__ = "fhir_resource_history"

    resource_type: Mapped[str] = mapped_column(String(64))
    id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    method: Mapped[str] = mapped_column(String(8))  # POST, PUT, DELETE
    resource: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        PrimaryKeyConstraint("resource_type", "id", "version_id", name="pk_fhir_resource_history"),
        Index("ix_fhir_resource_history_updated", "resource_type", "last_updated"),
    )


#: The search index tables have no primary key: their rows are derived from the resource (rebuilt
#: whole on every version), never addressed one by one, and deleted by ``rid``. A surrogate key
#: cost a sequence call and a B-tree insert per row, 13-17 % of an import's write statement.
#: The ORM needs a key to map a class; ``rid`` is one for it, not for the database.
_INDEX_ROW_MAPPER: dict[str, Any] = {"primary_key": ["rid"]}


class FhirIdxToken(Base):
    """Token search values (Coding, CodeableConcept, Identifier, code, boolean)."""

    __tablename__ = "fhir_idx_token"
    __mapper_args__ = _INDEX_ROW_MAPPER

    rid: Mapped[int] = mapped_column(BigInteger, index=True)
    rtype: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_fhir_idx_token_lookup", "rtype", "param", "code", "system"),)


class FhirIdxString(Base):
    """String search values: ``value`` normalised (lower case, no accents), ``raw`` as written."""

    __tablename__ = "fhir_idx_string"
    __mapper_args__ = _INDEX_ROW_MAPPER

    rid: Mapped[int] = mapped_column(BigInteger, index=True)
    rtype: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index(
            "ix_fhir_idx_string_prefix",
            "rtype",
            "param",
            "value",
            postgresql_ops={"value": "text_pattern_ops"},
        ),
        Index(
            "ix_fhir_idx_string_trgm",
            "value",
            postgresql_using="gin",
            postgresql_ops={"value": "gin_trgm_ops"},
        ),
    )


class FhirIdxDate(Base):
    """Date search values as an inclusive range [low, high] in UTC."""

    __tablename__ = "fhir_idx_date"
    __mapper_args__ = _INDEX_ROW_MAPPER

    rid: Mapped[int] = mapped_column(BigInteger, index=True)
    rtype: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    low: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    high: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_fhir_idx_date_low", "rtype", "param", "low"),
        Index("ix_fhir_idx_date_high", "rtype", "param", "high"),
    )


class FhirIdxReference(Base):
    """Reference search values, split into target type and id so chains join on the primary key."""

    __tablename__ = "fhir_idx_reference"
    __mapper_args__ = _INDEX_ROW_MAPPER

    rid: Mapped[int] = mapped_column(BigInteger, index=True)
    rtype: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(256))

    __table_args__ = (Index("ix_fhir_idx_reference_target", "target_id", "target_type", "rtype", "param"),)


class FhirIdxQuantity(Base):
    """Quantity search values (Observation.value and friends)."""

    __tablename__ = "fhir_idx_quantity"
    __mapper_args__ = _INDEX_ROW_MAPPER

    rid: Mapped[int] = mapped_column(BigInteger, index=True)
    rtype: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[Decimal] = mapped_column(Numeric)
    system: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_fhir_idx_quantity_lookup", "rtype", "param", "value"),)


class FhirExportJob(Base):
    """A Bulk Data $export request and its outcome (manifest once complete)."""

    __tablename__ = "fhir_export_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The requesting user; no FK because users belong to the identity domain (parallel branch).
    user_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # queued, running, complete, error
    request_url: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    progress: Mapped[str | None] = mapped_column(String(200))
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
