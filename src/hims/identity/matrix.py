"""Render the permission matrix and the public routes for docs/security.md.

`scripts/render_security_doc.py` writes the result between the markers in the doc; a test keeps
the committed doc equal to what this renders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from hims.core.permissions import PERMISSIONS, ROLE_PERMISSIONS, Role
from hims.core.security import route_policy

START = "<!-- generated:matrix:start (scripts/render_security_doc.py) -->"
END = "<!-- generated:matrix:end -->"


@dataclass(frozen=True)
class RouteInfo:
    """One effective route of the app (prefixes and router-level dependencies applied)."""

    kind: str  # "api", "mount" or "route" (plain Starlette, e.g. /docs)
    path: str
    methods: tuple[str, ...]
    dependant: Dependant | None


def iter_routes(app: FastAPI) -> Iterator[RouteInfo]:
    """Every route of ``app``, through included routers, as FastAPI itself resolves them."""
    for context in iter_route_contexts(app.routes):
        original = context.original_route
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


def public_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every API route declared public with `require_public()`."""
    found: list[tuple[str, str]] = []
    for route in iter_routes(app):
        if route.kind == "api":
            policy = route_policy(dependency_calls(route.dependant))
            if policy is not None and policy.permission is None:
                found.extend((method, route.path) for method in route.methods)
    return sorted(found, key=lambda item: (item[1], item[0]))


def render_matrix(app: FastAPI) -> str:
    """The Markdown block: role-by-permission table and the public routes."""
    roles = list(Role)
    lines = [START, "", "| permission | what it allows | " + " | ".join(r.value for r in roles) + " |"]
    lines.append("| --- | --- | " + " | ".join(":-:" for _ in roles) + " |")
    for permission, text in PERMISSIONS.items():
        marks = ["✓" if permission in ROLE_PERMISSIONS[r] else "" for r in roles]
        lines.append(f"| `{permission}` | {text} | " + " | ".join(marks) + " |")
    lines += ["", "Routes open without login (`require_public()`):", ""]
    lines += [f"- `{method} {path}`" for method, path in public_routes(app)]
    lines += ["", END]
    return "\n".join(lines)


def replace_block(document: str, block: str) -> str:
    """``document`` with the generated block replaced by ``block``."""
    head, _, rest = document.partition(START)
    _, _, tail = rest.partition(END)
    return head + block + tail
