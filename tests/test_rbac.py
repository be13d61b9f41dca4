"""RBAC everywhere: every route of the app declares a policy, and the matrix holds over HTTP.

The walk covers every route `create_app()` has, including those other domains add later and the
FHIR route table's: a new route without `require(...)` or `require_public()` (or a permission in
its table) fails here unless it is on the short list below.
"""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi import Depends, FastAPI
from httpx import AsyncClient
from starlette.responses import Response

from hims.core import routetable
from hims.core.permissions import ROLE_PERMISSIONS, Role
from hims.core.routes import iter_routes
from hims.core.routetable import PUBLIC, Entry, RouteTable
from hims.settings import Settings
from tests.identity.factories import app_of, create_user_in, token_headers

#: Routes deliberately open without login. Keep this list short; every entry is a decision.
PUBLIC_ROUTES = {
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/health/detailed"),
    ("GET", "/metrics"),  # checks its own bearer token / network allow-list (METRICS_*)
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/session"),  # the browser login form posts here
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("GET", "/fhir/R4/metadata"),  # the CapabilityStatement must be readable before login (FHIR R4)
    ("GET", "/login"),  # the UI login page (web domain)
    ("POST", "/login"),
}
#: Framework routes without dependencies (documentation) and static files.
OPEN_FRAMEWORK_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
OPEN_MOUNTS = {"/static"}
#: Route prefixes whose every route is exercised with a token of each role.
MATRIX_PREFIXES = ("/api/v1/auth", "/api/v1/users", "/api/v1/security-events")


def policy_problems(app: FastAPI) -> list[str]:
    """Every route without a declared policy, or public without being on the list."""
    problems = []
    for route in iter_routes(app):
        if route.kind == "api":
            policy = route.policy
            for method in route.methods:
                if policy is None:
                    problems.append(f"{method} {route.path}: no require(...) or require_public()")
                elif policy.permission is None and (method, route.path) not in PUBLIC_ROUTES:
                    problems.append(f"{method} {route.path}: public but not on the PUBLIC_ROUTES list")
        elif route.kind == "mount":
            if route.path not in OPEN_MOUNTS:
                problems.append(f"mount {route.path}: not an allowed open mount")
        elif route.path not in OPEN_FRAMEWORK_PATHS:
            problems.append(f"{route.path}: a plain route without a policy")
    return problems


def test_every_route_declares_its_access(app: FastAPI) -> None:
    assert policy_problems(app) == []


def test_the_walk_catches_a_forgotten_route(app: FastAPI) -> None:
    extra = FastAPI()

    @extra.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    async def unrelated() -> None:
        return None

    @extra.get("/api/v1/other-dependency", dependencies=[Depends(unrelated)])
    async def other() -> dict[str, str]:
        return {}

    # Router-level policies count (and are found through include_router).
    from fastapi import APIRouter

    from hims.core.security import require

    guarded = APIRouter(dependencies=[require("audit:read")])

    @guarded.get("/guarded")
    async def inner() -> dict[str, str]:
        return {}

    extra.include_router(guarded, prefix="/api/v1")

    # A route table's entries declare theirs; a public one must be on the list too.
    async def hello() -> Response:
        return Response()

    entries = [Entry("GET", "/open", PUBLIC, hello), Entry("GET", "/shut", "audit:read", hello)]
    routetable.install(extra, RouteTable("/tabled", entries))

    problems = policy_problems(extra)
    assert any("/api/v1/forgotten" in p for p in problems)
    assert any("/api/v1/other-dependency" in p for p in problems)
    assert not any("/api/v1/guarded" in p for p in problems)
    assert "/api/v1/guarded" in [r.path for r in iter_routes(extra)]
    assert any("GET /tabled/open: public but not on the PUBLIC_ROUTES list" in p for p in problems)
    assert not any("/tabled/shut" in p for p in problems)
    assert "/tabled/shut" in [r.path for r in iter_routes(extra)]


def _matrix_routes(app: FastAPI) -> list[tuple[str, str, str]]:
    found = []
    for route in iter_routes(app):
        if route.kind == "api" and route.path.startswith(MATRIX_PREFIXES):
            policy = route.policy
            assert policy is not None
            if policy.permission is not None:
                found.extend((method, route.path, policy.permission) for method in route.methods)
    return found


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_gets_exactly_its_permissions(
    client: AsyncClient, settings: Settings, role: Role
) -> None:
    app = app_of(client)
    user = await create_user_in(app, username=f"matrix.{role.value}", roles=[role])
    routes = _matrix_routes(app)
    assert len(routes) >= 12
    for method, path, permission in routes:
        # A random id: allowed roles reach the handler (404/422...) without changing anything real.
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        headers = token_headers(settings, user)  # fresh token: logout revokes the one it is given
        response = await client.request(method, url, headers=headers, json={})
        allowed = permission in ROLE_PERMISSIONS[role]
        if allowed:
            assert response.status_code not in (401, 403), (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.text)
            assert response.json()["code"] == "permission_denied"
