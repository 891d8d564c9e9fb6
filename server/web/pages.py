"""The browser pages: the creator overlay (`/overlay`), the viewer demo (`/demo`) and their files.

The pages are static files with no build step (server/web/static). `/overlay?token=...` checks the
overlay token before serving the page, so a wrong or expired link says so in the browser source
instead of showing an empty overlay; the page then uses the same token for its WebSocket `hello`.
`?test=1` serves the page without a token: it generates fake gifts locally (docs/overlay.md).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from server.auth import AuthError, Role
from server.config import Config
from server.runtime import Runtime
from server.web.body import read_fields
from server.web.demo_guest import demo_guest, demo_of
from server.web.problem import HTTPProblem

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


async def home(request: Request) -> Response:
    """`/`: the demo in demo mode, else a page of links (the API answers no HTML elsewhere)."""
    if request.app.state.runtime.config.demo:
        return RedirectResponse("/demo", status_code=307)
    return page("index.html")


async def demo_session(request: Request) -> Response:
    """The demo room, its viewers and a fresh overlay link (demo mode only)."""
    from server.web.demo import overlay_url

    rt, state = demo_of(request)
    return JSONResponse(
        {
            "room": state.room,
            "creator": state.creator,
            "viewers": [{"user": v.user, "name": v.name} for v in state.viewers],
            "overlay_url": overlay_url(rt, state),
        },
        headers={"Cache-Control": "no-store"},
    )


async def demo_token(request: Request) -> Response:
    """A viewer token for one of the demo viewers, and only for them (demo mode only)."""
    rt, state = demo_of(request)
    user = (await read_fields(request, frozenset({"user"}))).text("user", 128)
    viewer = state.viewer(user)
    if viewer is None:
        raise HTTPProblem(403, "forbidden", "only demo viewers get tokens here")
    token = rt.issuer.mint(viewer.user, Role.VIEWER, name=viewer.name, ttl_s=3600)
    return JSONResponse(
        {"user": viewer.user, "name": viewer.name, "token": token},
        headers={"Cache-Control": "no-store"},
    )


def routes(config: Config) -> list[BaseRoute]:
    found: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/overlay", overlay_page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    if config.demo:
        found += [
            Route("/demo", demo_page, methods=["GET"]),
            Route("/demo/api/session", demo_session, methods=["GET"]),
            Route("/demo/api/token", demo_token, methods=["POST"]),
            Route("/demo/api/guest", demo_guest, methods=["POST"]),
        ]
    return found
