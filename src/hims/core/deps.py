"""`Annotated` dependency aliases shared by every router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from hims.core.db import Database
from hims.core.kv import KeyValueStore
from hims.settings import Settings

# The getters are `async def` although they never await: FastAPI runs a plain `def` dependency
# in a worker thread, a thread hop per request for a dictionary lookup.


async def get_settings(request: Request) -> Settings:
    """The app's Settings (built once at start)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    """The app's Database."""
    db: Database = request.app.state.db
    return db


async def get_store(request: Request) -> KeyValueStore:
    """The app's key-value store (Redis or in-process)."""
    store: KeyValueStore = request.app.state.kv
    return store


async def get_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled driver connection outside any transaction: a service's writes are each one
    statement with their PHI log rows, and a service groups several itself (`records.atomic`)."""
    db: Database = request.app.state.db
    async with db.statement_connection() as conn:
        yield conn


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction: committed after the handler returns, before the response."""
    db: Database = request.app.state.db
    async with db.transaction() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
StoreDep = Annotated[KeyValueStore, Depends(get_store)]
# scope="function": the commit happens before the response is sent, so a failed commit is
# reported to the client instead of after a 200 went out.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ConnDep = Annotated[asyncpg.Connection, Depends(get_connection, scope="function")]
