"""The operator view's routes: the page, its JSON, and the reconcile button; admin tokens only.

`GET /admin?token=<admin token>` serves the page (static/admin.html, no build step) after checking
the token, as `/overlay` does; the page sends the same token as a bearer token to
`GET /api/admin/status` (every second) and `POST /api/admin/reconcile`.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.auth import AuthError, Principal, Role
from server.runtime import Runtime
from server.web.admin.reconcile import start_reconcile
from server.web.admin.status import deployment_status
from server.web.api import principal
from server.web.pages import page
from server.web.problem import HTTPProblem, refusal

_RECONCILES = "admin_reconciles"  # runtime component: the reconcile tasks of this process


def _admin(p: Principal) -> Principal:
    if p.role is not Role.ADMIN:
        raise refusal("forbidden", f"the operator view needs an admin token, not {p.role.value}")
    return p


async def admin_page(request: Request) -> Response:
    token = request.query_params.get("token")
    if not token:
        raise HTTPProblem(401, "unauthorized", "add ?token=<admin token>")
    rt: Runtime = request.app.state.runtime
    try:
        _admin(await rt.issuer.verify(token, rt.redis))
    except AuthError as exc:
        raise HTTPProblem(401, exc.code, exc.message) from None
    return page("admin.html")


async def get_status(request: Request) -> Response:
    _admin(await principal(request))
    return JSONResponse(await deployment_status(request.app.state.runtime))


async def post_reconcile(request: Request) -> Response:
    p = _admin(await principal(request))
    rt: Runtime = request.app.state.runtime
    tasks: set[asyncio.Task[None]] = rt.components.setdefault(_RECONCILES, set())
    started, result = await start_reconcile(rt, p.user, tasks)
    return JSONResponse({"started": started, "reconcile": result}, status_code=202)


def routes() -> list[BaseRoute]:
    return [
        Route("/admin", admin_page, methods=["GET"]),
        Route("/api/admin/status", get_status, methods=["GET"]),
        Route("/api/admin/reconcile", post_reconcile, methods=["POST"]),
    ]
