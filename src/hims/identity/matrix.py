"""Render the permission matrix and the public routes for docs/security.md.

`scripts/render_security_doc.py` writes the result between the markers in the doc; a test keeps
the committed doc equal to what this renders.
"""

from __future__ import annotations

from fastapi import FastAPI

from hims.core.permissions import PERMISSIONS, ROLE_PERMISSIONS, Role
from hims.core.routes import iter_routes

START = "<!-- generated:matrix:start (scripts/render_security_doc.py) -->"
END = "<!-- generated:matrix:end -->"


def public_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every API route declared public (`require_public()`, a table's `PUBLIC`)."""
    found: list[tuple[str, str]] = []
    for route in iter_routes(app):
        if route.kind == "api":
            policy = route.policy
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
    lines += ["", "Routes open without login (`require_public()`, or `PUBLIC` in a route table):", ""]
    lines += [f"- `{method} {path}`" for method, path in public_routes(app)]
    lines += ["", END]
    return "\n".join(lines)


def replace_block(document: str, block: str) -> str:
    """``document`` with the generated block replaced by ``block``."""
    head, _, rest = document.partition(START)
    _, _, tail = rest.partition(END)
    return head + block + tail
