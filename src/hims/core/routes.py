"""Walking the app's routes (this FastAPI keeps included routers nested; this flattens them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from hims.core.fastroutes import FastRoute


@dataclass(frozen=True)
class RouteInfo:
    """One effective route of the app (prefixes and router-level dependencies applied)."""

    kind: str  # "api", "mount" or "route" (plain Starlette, e.g. /docs)
    path: str
    methods: tuple[str, ...]
    dependant: Dependant | None


def iter_routes(app: FastAPI) -> Iterator[RouteInfo]:
    """Every route of ``app``, through included routers, as FastAPI itself resolves them (a
    `FastRoute` is another way to dispatch a route listed here already, so it is not listed)."""
    for context in iter_route_contexts(app.routes):
        original = context.original_route
        if isinstance(original, FastRoute):
            continue
        kind = "route"
        if isinstance(original, APIRoute):
            kind = "api"
        elif isinstance(original, Mount):
            kind = "mount"
        dependant = getattr(context, "dependant", None) if kind == "api" else None
        yield RouteInfo(
            kind=kind,
            path=str(context.path or getattr(original, "path", "")),
            methods=tuple(sorted(context.methods or ())),
            dependant=dependant if isinstance(dependant, Dependant) else None,
        )


def dependency_calls(dependant: Dependant | None) -> list[Any]:
    """Every dependency callable below ``dependant`` (router-level ones included), depth first."""
    calls: list[Any] = []
    stack = list(dependant.dependencies) if dependant else []
    while stack:
        dep = stack.pop()
        if dep.call is not None:
            calls.append(dep.call)
        stack.extend(dep.dependencies)
    return calls
