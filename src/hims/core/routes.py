"""Walking the app's routes (this FastAPI keeps included routers nested; this flattens them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts


@dataclass(frozen=True)
class RouteInfo:
    """One endpoint: its full path template, methods, and the APIRoute (None for non-API routes)."""

    path: str
    methods: frozenset[str]
    route: APIRoute | None


def iter_routes(app: FastAPI) -> Iterator[RouteInfo]:
    """Every route of ``app`` with its full path, including those in included routers."""
    for context in iter_route_contexts(app.router.routes):
        original = context.original_route
        methods = frozenset(getattr(context, "methods", None) or getattr(original, "methods", None) or ())
        yield RouteInfo(
            path=context.path or "",
            methods=methods,
            route=original if isinstance(original, APIRoute) else None,
        )
