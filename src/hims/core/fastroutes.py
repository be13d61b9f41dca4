"""Dispatch the hottest routes without FastAPI's per-request routing and dependency machinery.

A FHIR read, create, update or delete spent about a third of its server CPU in FastAPI itself:
matching the request against the routes of each included router, twice, then solving the
route's dependencies (`solve_dependencies`, parameter analysis, scope bookkeeping). For a route
whose dependencies are all ``async def f(request)`` and whose path parameters are plain strings,
none of that machinery decides anything: `FastRoute` does the same work directly.

What stays the same, by construction:

- which route serves a request: a `FastRoute` sits just before the router that holds its route,
  matches with that route's own compiled path regex and convertors, and steps aside when an
  earlier route of the same router would have matched (FastAPI picks the first full match);
- what runs: the route's own dependency callables, then its endpoint, with the same arguments;
- errors: raised inside Starlette's `wrap_app_handling_exceptions`, so the app's exception
  handlers render them exactly as for any route;
- what the middleware sees: ``scope["route"]`` is the original `APIRoute` (metrics and access
  log label requests by its path template), ``scope["endpoint"]`` and ``scope["path_params"]``
  as FastAPI sets them.

A route that does not qualify (a dependency with sub-dependencies, a yield dependency, a typed
path parameter, router-level dependencies...) is left to FastAPI, and so is every request while
``app.dependency_overrides`` holds anything; `install_fast_routes` returns the routes it took over
so a test can pin them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette._utils import get_route_path
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

RequestDependency = Callable[[Request], Awaitable[Any]]


class FastRoute(BaseRoute):
    """One method of one `APIRoute`, dispatched directly (see the module docstring)."""

    def __init__(
        self,
        route: APIRoute,
        method: str,
        dependencies: dict[str, RequestDependency],
        earlier: list[APIRoute],
    ) -> None:
        self.route = route
        self.method = method
        self.dependencies = dependencies
        self.earlier = earlier
        assert route.dependant.request_param_name is not None
        self.request_parameter = route.dependant.request_param_name
        # Read by FastAPI's route-selected telemetry and OpenTelemetry's route naming.
        self.path = route.path
        self.path_format = route.path_format

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != self.method:
            return Match.NONE, {}
        app = scope.get("app")
        if app is not None and getattr(app, "dependency_overrides", None):
            return Match.NONE, {}  # overridden dependencies: FastAPI resolves them
        path = get_route_path(scope)
        found = self.route.path_regex.match(path)
        if found is None:
            return Match.NONE, {}
        for route in self.earlier:
            if route.path_regex.match(path):
                return Match.NONE, {}
        convertors = self.route.param_convertors
        params = {name: convertors[name].convert(value) for name, value in found.groupdict().items()}
        return Match.FULL, {"endpoint": self.route.endpoint, "path_params": params, "route": self.route}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            arguments: dict[str, Any] = dict(scope["path_params"])
            for name, dependency in self.dependencies.items():
                arguments[name] = await dependency(request)
            arguments[self.request_parameter] = request
            response: Response = await self.route.endpoint(**arguments)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(app, request)(scope, receive, send)


_OTHER_SPECIAL_PARAMETERS = (
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


def _takes_request_only(dependant: Dependant) -> bool:
    """Whether ``dependant`` takes the request and nothing FastAPI would have to parse or inject
    (its path parameters aside, checked by the caller)."""
    return (
        dependant.request_param_name is not None
        and not (
            dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.own_oauth_scopes
        )
        and all(getattr(dependant, name) is None for name in _OTHER_SPECIAL_PARAMETERS)
        and inspect.iscoroutinefunction(dependant.call)
    )


def _simple_dependencies(route: APIRoute) -> dict[str, RequestDependency] | None:
    """The route's dependencies by parameter name when each is ``async def f(request)`` and the
    route takes only those, the request and string path parameters; else None."""
    dependant = route.dependant
    if route.dependencies or not _takes_request_only(dependant):
        return None
    if any(field.field_info.annotation is not str for field in dependant.path_params):
        return None
    found: dict[str, RequestDependency] = {}
    for sub in dependant.dependencies:
        if (
            sub.name is None
            or sub.call is None
            or sub.dependencies
            or sub.path_params
            or not _takes_request_only(sub)
            or len(inspect.signature(sub.call).parameters) != 1
        ):
            return None
        found[sub.name] = sub.call
    return found


def install_fast_routes(
    app: FastAPI, router: APIRouter, endpoints: Collection[Callable[..., Any]]
) -> list[FastRoute]:
    """Put a `FastRoute` for each qualifying route of ``router`` whose endpoint is in ``endpoints``
    just before ``router`` in the app's routes. Returns those installed."""
    position = next(
        (i for i, r in enumerate(app.router.routes) if getattr(r, "original_router", None) is router), None
    )
    context = getattr(app.router.routes[position], "include_context", None) if position is not None else None
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    if (
        position is None
        or context is None
        or context.dependencies
        or router.dependencies
        or len(routes) != len(router.routes)  # another kind of route: its matching is not ours to copy
    ):
        return []
    fast: list[FastRoute] = []
    for index, route in enumerate(routes):
        if route.endpoint not in endpoints:
            continue
        dependencies = _simple_dependencies(route)
        if dependencies is None:
            continue
        for method in sorted(route.methods or ()):
            earlier = [r for r in routes[:index] if method in (r.methods or ())]
            fast.append(FastRoute(route, method, dependencies, earlier))
    app.router.routes[position:position] = fast
    return fast
