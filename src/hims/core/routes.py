"""Walking the app's routes: FastAPI's (through included routers, which this FastAPI keeps
nested) and the route tables Starlette serves (`hims.core.routetable`), each with its policy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Mount

from hims.core.routetable import TableRoute
from hims.core.security import Policy, route_policy


@dataclass(frozen=True)
class RouteInfo:
    """One effective route of the app (prefixes and router-level dependencies applied)."""

    kind: str  # "api" (declares its access), "mount" or "route" (plain Starlette, e.g. /docs)
    path: str
    methods: tuple[str, ...]
    dependant: Dependant | None  # a FastAPI route's; None for a route table's
    policy: Policy | None  # what require(...) / require_public() or the table entry declares


def iter_routes(app: FastAPI) -> Iterator[RouteInfo]:
    """Every route of ``app``: FastAPI's as FastAPI itself resolves them (`iter_route_contexts`),
    and the routes inside mounted routers (a route table) instead of their mount."""
    for context in iter_route_contexts(app.routes):
        original = context.original_route
        if isinstance(original, APIRoute):
            dependant = getattr(context, "dependant", None)
            dependant = dependant if isinstance(dependant, Dependant) else None
            yield RouteInfo(
                kind="api",
                path=str(context.path),
                methods=tuple(sorted(context.methods or ())),
                dependant=dependant,
                policy=route_policy(dependency_calls(dependant)),
            )
        else:
            yield from _starlette_routes(original, str(context.path or getattr(original, "path", "")))


def _starlette_routes(route: BaseRoute, path: str) -> Iterator[RouteInfo]:
    if isinstance(route, Mount) and route.routes:
        for inner in route.routes:
            yield from _starlette_routes(inner, path + str(getattr(inner, "path", "")))
        return
    methods = tuple(sorted(getattr(route, "methods", None) or ()))
    if isinstance(route, TableRoute):
        yield RouteInfo("api", path, methods, None, Policy(route.permission))
    else:
        yield RouteInfo("mount" if isinstance(route, Mount) else "route", path, methods, None, None)


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
