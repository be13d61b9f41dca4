"""Staff accounts and the security event log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from hims.core.db import Base
from hims.core.models import Timestamps, uuid_pk


class User(Timestamps, Base):
    """A staff account.

    ``username`` is stored lower-case (the service normalises every input), so the plain unique
    constraint makes it unique case-insensitively. Failed-login counters live in the key-value
    store, not here, so a password-guessing storm never writes to this table.
    """

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(32)), default=list)
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("practitioners.id", ondelete="SET NULL"), index=True
    )
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The TOTP seed is never serialised by any schema; it is only read to verify a code.
    mfa_secret: Mapped[str | None] = mapped_column(String(64))
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # SHA-256 of each unused recovery code (codes are 80 random bits, so a fast hash suffices).
    recovery_code_hashes: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("username = lower(username)", name="username_lowercase"),)


class SecurityEvent(Base):
    """One authentication or account event (login_failed, locked, role_changed, ...).

    ``user_id``/``actor_id`` carry no foreign key on purpose: the trail must outlive the account.
    """

    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    event: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(16), default="success")  # success, failure, denied
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    username: Mapped[str | None] = mapped_column(String(150))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    actor_username: Mapped[str | None] = mapped_column(String(150))
    ip_address: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (
        Index("ix_security_events_user_time", "user_id", "occurred_at"),
        Index("ix_security_events_event_time", "event", "occurred_at"),
    )
