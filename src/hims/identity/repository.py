"""All SQL of the identity domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hims.identity.models import SecurityEvent, User


async def get_user(session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
    """The user with ``user_id``."""
    query = select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    result: User | None = (await session.execute(query)).scalar_one_or_none()
    return result


async def get_user_by_username(
    session: AsyncSession, username: str, *, for_update: bool = False
) -> User | None:
    """The user with this (already normalised) username."""
    query = select(User).where(User.username == username)
    if for_update:
        query = query.with_for_update()
    result: User | None = (await session.execute(query)).scalar_one_or_none()
    return result


async def get_user_by_login(session: AsyncSession, login: str) -> User | None:
    """The active user whose username or e-mail address is ``login`` (first match)."""
    query = (
        select(User)
        .where(or_(User.username == login.lower(), func.lower(User.email) == login.lower()))
        .order_by(User.created_at)
        .limit(1)
    )
    result: User | None = (await session.execute(query)).scalar_one_or_none()
    return result


async def list_users(
    session: AsyncSession, *, limit: int, offset: int, active: bool | None = None
) -> Sequence[User]:
    """Users ordered by username."""
    query = select(User).order_by(User.username).limit(limit).offset(offset)
    if active is not None:
        query = query.where(User.active.is_(active))
    return (await session.execute(query)).scalars().all()


async def add_user(session: AsyncSession, user: User) -> User:
    """Insert ``user`` and flush (the caller's transaction commits)."""
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def insert_event(session: AsyncSession, **values: Any) -> None:
    """Append one security event."""
    await session.execute(insert(SecurityEvent).values(**values))


async def list_events(
    session: AsyncSession, *, user_id: uuid.UUID | None, event: str | None, limit: int
) -> Sequence[SecurityEvent]:
    """Most recent security events first."""
    query = select(SecurityEvent).order_by(SecurityEvent.occurred_at.desc(), SecurityEvent.id.desc())
    if user_id is not None:
        query = query.where(SecurityEvent.user_id == user_id)
    if event is not None:
        query = query.where(SecurityEvent.event == event)
    return (await session.execute(query.limit(limit))).scalars().all()
