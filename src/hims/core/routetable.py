"""An API served from an explicit route table (method, path, permission, endpoint) by Starlette alone.

FastAPI matches a request against the routes of every included router in turn and solves the
chosen route's dependencies on every request: for the FHIR API that was about a third of a CRUD
request's CPU. A `RouteTable` is served instead by a plain Starlette `Router` mounted under the
table's prefix, put first among the app's routes by `install`: a request under the prefix is
matched against the table alone, in the table's order, and the entry's wrapper authenticates and
checks the entry's permission itself (`hims.core.security.authorize`, what ``require(...)`` runs).
The app's middleware and exception handlers apply as to any route, and ``scope["route"]`` is the
table's route, so metrics and the access log label a request by its path template.

An endpoint takes, by name, each of its path's parameters and any of: ``request``; ``actor``
(the authenticated caller; a public entry has none); ``database``; ``settings``; ``session``
(the request's transaction, committed after the endpoint returns and before the response is
sent, as `hims.core.deps.SessionDep`). The names are checked when the table is built, not per
request.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from hims.core.errors import Forbidden
from hims.core.security import Actor, authenticate, check_permission_name, permit

Endpoint = Callable[..., Awaitable[Response]]

#: Called when an authenticated caller is refused (by the entry's permission or by the endpoint's
#: own checks), before the 403 goes out: the API logs the attempt where it belongs.
OnDenied = Callable[[Request, Actor], Awaitable[None]]

#: The permission of an entry anyone may call without logging in.
PUBLIC: Final = None

#: What an endpoint may ask for by parameter name, besides its path parameters.
RESOURCES = frozenset({"request", "actor", "database", "settings", "session"})

_PATH_PARAMETER = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)")


@dataclass(frozen=True)
class Entry:
    """One row of a route table; ``path`` is below the table's prefix ("" is the prefix itself)."""

    method: str
    path: str
    permission: str | None
    endpoint: Endpoint


class TableRoute(Route):
    """An entry as a Starlette route: matches its one method and path, declares its permission."""

    def __init__(self, path: str, entry: Entry, on_denied: OnDenied | None = None) -> None:
        super().__init__(
            path, _serve(entry, path, on_denied), methods=[entry.method], name=entry.endpoint.__name__
        )
        # Starlette lets a GET route answer HEAD too; an entry answers exactly its method, as the
        # FHIR API always has (a HEAD of a read would log a PHI access for a bodiless answer).
        self.methods = {entry.method}
        self.permission = entry.permission


class _PrefixRoute(TableRoute):
    """An entry at the table's prefix itself, which sits among the app's own routes."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, recording this route in ``scope["route"]``: Starlette's router does
        that for the routes it picks (the mounted table's), FastAPI's for its own routes only."""
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def _serve(entry: Entry, path: str, on_denied: OnDenied | None) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of ``entry``: authorize, gather the arguments, call the endpoint."""
    names = tuple(inspect.signature(entry.endpoint).parameters)
    in_path = tuple(_PATH_PARAMETER.findall(path))
    unknown = set(names) - set(in_path) - RESOURCES
    missing = set(in_path) - set(names)
    if unknown or missing or ("actor" in names and entry.permission is None):
        raise TypeError(
            f"{entry.endpoint.__qualname__} ({entry.method} {path}): parameters must be its path's"
            f" ({', '.join(in_path) or 'none'}) and any of {', '.join(sorted(RESOURCES))};"
            " a public entry has no actor"
        )
    permission = None if entry.permission is None else check_permission_name(entry.permission)
    endpoint = entry.endpoint
    wants_request, wants_actor = "request" in names, "actor" in names
    wants_database, wants_settings = "database" in names, "settings" in names
    wants_session = "session" in names

    async def serve(request: Request) -> Response:
        if permission is None:
            return await call(request, None)
        actor = await authenticate(request)
        try:
            return await call(request, await permit(request, actor, permission))
        except Forbidden:
            if on_denied is not None:
                await on_denied(request, actor)
            raise

    async def call(request: Request, actor: Actor | None) -> Response:
        arguments: dict[str, Any] = dict(request.path_params)  # the prefix has none (RouteTable)
        if wants_actor:
            arguments["actor"] = actor
        if wants_request:
            arguments["request"] = request
        state = request.app.state
        if wants_database:
            arguments["database"] = state.db
        if wants_settings:
            arguments["settings"] = state.settings
        if not wants_session:
            return await endpoint(**arguments)
        async with state.db.transaction() as session:
            arguments["session"] = session
            return await endpoint(**arguments)

    return serve


class RouteTable:
    """The entries of one API under ``prefix``, in matching order: the first that matches serves."""

    def __init__(self, prefix: str, entries: Sequence[Entry], *, on_denied: OnDenied | None = None) -> None:
        if _PATH_PARAMETER.search(prefix):
            raise ValueError(f"a table's prefix is literal: {prefix!r}")
        self.prefix = prefix
        self.entries = tuple(entries)
        self.routes: list[BaseRoute] = [
            # A Mount matches only below its path, so an entry at the prefix itself is a route
            # of its own beside it.
            Mount(prefix, routes=[TableRoute(e.path, e, on_denied) for e in self.entries if e.path]),
            *(_PrefixRoute(prefix, e, on_denied) for e in self.entries if not e.path),
        ]


def install(app: FastAPI, table: RouteTable) -> None:
    """Put ``table``'s routes first among ``app``'s, so a request under its prefix matches at once
    and one elsewhere is turned down by the prefix alone."""
    app.router.routes[:0] = table.routes
