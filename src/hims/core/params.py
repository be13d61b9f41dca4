"""Query parameters a route does not declare are refused, before the route runs.

A misspelt filter (``?name=`` for ``?family=``) must not fall back to "no filter": a search would
answer the first page of every record and log every row disclosed. So each REST request is
checked against the query parameters its route and the route's dependencies declare.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from hims.core.errors import BadRequest, field_error

_DECLARED = "hims_query_names"


def _names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _names(sub)
    return names


def declared_query_names(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` takes (computed once per route)."""
    found: frozenset[str] | None = getattr(route, _DECLARED, None)
    if found is None:
        found = frozenset(_names(route.dependant))
        setattr(route, _DECLARED, found)
    return found


async def refuse_unknown_query(request: Request) -> None:
    """400 ``unknown_parameter`` naming every query parameter the route does not take."""
    if not request.query_params:
        return
    route: Any = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params.keys()) - declared_query_names(route))
    if unknown:
        raise BadRequest(
            f"Unknown query parameter(s): {', '.join(unknown)}.",
            code="unknown_parameter",
            errors=[
                field_error(name, "This endpoint does not take this parameter.", "unknown_parameter")
                for name in unknown
            ],
        )
