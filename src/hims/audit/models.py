"""`phi_access_log` (guide §11.1, done right)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import INET, UUID
from sqlalchemy.orm import Mapped, mapped_column

from hims.core.db import Base


class PhiAccessLog(Base):
    """One row per patient per access.

    ``user_id`` and ``patient_id`` carry no foreign keys on purpose: an audit trail must outlive
    the rows it talks about (a merged or purged patient, a removed account), and a foreign key
    would either block those operations or cascade the evidence away.

    The table is append-only and hash-chained (migration 0015_audit_chain, docs/audit.md): the
    database fills ``chain``, ``seq``, ``prev_hash`` and ``row_hash`` on insert, whatever the
    inserter sends, and refuses UPDATE, DELETE and TRUNCATE.
    """

    __tablename__ = "phi_access_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    username: Mapped[str] = mapped_column(String(150))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    action: Mapped[str] = mapped_column(String(50))  # read, search, create, update, delete, ...
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    ip_address: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))  # api, fhir, web, cli, job
    outcome: Mapped[str] = mapped_column(String(16), default="success")  # success, denied, error
    # Filled by the BEFORE INSERT trigger phi_access_log_chain (one chain per database session).
    chain: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)
    row_hash: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        Index("ix_phi_access_log_patient_time", "patient_id", "occurred_at"),
        Index("ix_phi_access_log_user_time", "user_id", "occurred_at"),
        # Time-bounded reads of the whole log (compliance "between T1 and T2", AuditEvent `date`
        # and unfiltered searches) page in (occurred_at, id) order: migration 0008_audit_time.
        Index("ix_phi_access_log_time", "occurred_at", "id"),
        # A chain has one row per seq: a forked chain fails the insert (migration 0015_audit_chain).
        Index("uq_phi_access_log_chain_seq", "chain", "seq", unique=True),
    )
