"""The browser pages: the creator overlay (`/overlay`), the viewer demo (`/demo`) and their files.

The pages are static files with no build step (server/static). `/overlay?token=...` checks the
overlay token before serving the page, so a wrong or expired link says so in the browser source
instead of showing an empty overlay; the page then uses the same token for its WebSocket `hello`.
`?test=1` serves the page without a token: it generates fake gifts locally (docs/overlay.md).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from server.auth import AuthError, Role
from server.config import Config
from server.problem import HTTPProblem
from server.runtime import Runtime

STATIC_DIR = Path(__file__).with_name("static")

# The token rides in the page URL: never let it leak through Referer or a shared cache.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
        "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def page(name: str) -> Response:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers=_PAGE_HEADERS)


async def overlay_page(request: Request) -> Response:
    if request.query_params.get("test") == "1":
        return page("overlay.html")
    token = request.query_params.get("token")
    if not token:
        raise HTTPProblem(
            401, "unauthorized", "add ?token=<overlay token> (or ?test=1 for a local preview)"
        )
    rt: Runtime = request.app.state.runtime
    try:
        principal = await rt.issuer.verify(token, rt.redis)
    except AuthError as exc:
        raise HTTPProblem(401, exc.code, exc.message) from None
    if principal.role is not Role.OVERLAY:
        raise HTTPProblem(
            403, "forbidden", f"this is a {principal.role.value} token; the overlay needs an "
            "overlay token scoped to one room"
        )
    return page("overlay.html")


async def demo_page(request: Request) -> Response:
    return page("demo.html")


def routes(config: Config) -> list[BaseRoute]:
    found: list[BaseRoute] = [
        Route("/overlay", overlay_page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if config.demo:
        found.append(Route("/demo", demo_page, methods=["GET"]))
    return found
