"""The creator dashboard's routes: its page, the room's overview, the overlay key (issue, rotate),
the overlay settings (read, change) and earnings per stream.

Every API route needs `Authorization: Bearer <token>` of the room's creator (or an admin); the
dashboard reuses the existing routes for the rest (go live and end, the goal, redemption, the
moderation lists). Refusals are problem+json with the protocol's codes: `forbidden` (403),
`room_not_found` (404), and for bad input (`wrong_type`, `out_of_range`, `unknown_field`, 400)
nothing is changed. docs/creator.md documents each route's bodies.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from protocol.limits import MAX_ROOM_ID_LEN, MAX_USER_LEN
from server.auth import Role
from server.config import Config
from server.live import creator_earnings
from server.live.overlay_keys import OverlayKeys
from server.live.overlay_settings import FIELDS, OverlaySettingsStore, read_changes, to_json
from server.money.wallet import valid_ident
from server.runtime import Runtime
from server.web.api import principal, room_owner
from server.web.body import read_fields
from server.web.pages import page
from server.web.problem import refusal

_NO_STORE = {"Cache-Control": "no-store"}


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _json(data: dict[str, Any]) -> JSONResponse:
    # Keys and tokens are in these answers: never in a shared cache.
    return JSONResponse(data, headers=_NO_STORE)


def _keys(request: Request) -> OverlayKeys:
    return OverlayKeys(_rt(request))


def _key_body(request: Request, room: str, key: str) -> dict[str, Any]:
    return {"room": room, "key": key, "url": f"{request.base_url}overlay?key={key}"}


async def creator_page(request: Request) -> Response:
    return page("creator.html")


async def get_room(request: Request) -> Response:
    """The room's stream and goal, as the dashboard shows them."""
    _, info = await room_owner(request)
    goal = await _rt(request).components["realtime"].state.goal(info.room)
    return _json({"room": info.room, "creator": info.creator, "live": info.live,
                  "title": info.title, "started_at": info.started_at,
                  "ended_at": info.ended_at, "goal": goal.to_dict() if goal else None})


async def get_overlay_key(request: Request) -> Response:
    """The room's overlay key and URL, made on first use."""
    _, info = await room_owner(request)
    key = await _keys(request).issue(info.room, info.creator)
    return _json(_key_body(request, info.room, key))


async def post_rotate_key(request: Request) -> Response:
    """A new key: overlays on the old URL are told `overlay_key_invalid` and closed (4005)."""
    _, info = await room_owner(request)
    await read_fields(request, frozenset())
    key = await _keys(request).rotate(info.room, info.creator)
    return _json(_key_body(request, info.room, key))


async def get_overlay_settings(request: Request) -> Response:
    _, info = await room_owner(request)
    settings = await OverlaySettingsStore(_rt(request)).get(info.room)
    return _json(to_json(settings))


async def post_overlay_settings(request: Request) -> Response:
    """Change some settings (the fields given); every open overlay of the room applies them."""
    p, info = await room_owner(request)
    changes = read_changes(await read_fields(request, FIELDS))
    settings = await OverlaySettingsStore(_rt(request)).update(info.room, p.user, changes)
    return _json(to_json(settings))


async def get_streams(request: Request) -> Response:
    """The caller's latest streams with their diamonds (`?room=` narrows to one room)."""
    p = await principal(request)
    if p.role not in (Role.CREATOR, Role.ADMIN):
        raise refusal("forbidden", f"a {p.role.value} token has no earnings")
    room = request.query_params.get("room")
    if room is not None and not valid_ident(room, MAX_ROOM_ID_LEN):
        raise refusal("invalid_value", "room: must be 1+ of A-Z a-z 0-9 - . _ ~")
    items = await creator_earnings.per_stream(_rt(request), p.user, room)
    return _json({"items": [s.to_json() for s in items]})


async def post_dev_token(request: Request) -> Response:
    """Development and demo mode only: a creator token for any user id (the sign-in button)."""
    rt = _rt(request)
    if not (rt.config.development or rt.config.demo):
        raise refusal("not_found", "dev tokens are served in development mode only")
    r = await read_fields(request, frozenset({"user", "name"}))
    user = r.ident("user", MAX_USER_LEN)
    try:
        token = rt.issuer.mint(user, Role.CREATOR, name=r.opt_text("name", 64))
    except ValueError as exc:
        raise refusal("invalid_display_name", str(exc)) from None
    return _json({"user": user, "token": token})


def routes(config: Config) -> list[BaseRoute]:
    return [
        Route("/creator", creator_page, methods=["GET"]),
        Route("/creator/api/dev-token", post_dev_token, methods=["POST"]),
        Route("/api/rooms/{room}", get_room, methods=["GET"]),
        Route("/api/rooms/{room}/overlay-key", get_overlay_key, methods=["GET"]),
        Route("/api/rooms/{room}/overlay-key/rotate", post_rotate_key, methods=["POST"]),
        Route("/api/rooms/{room}/overlay-settings", get_overlay_settings, methods=["GET"]),
        Route("/api/rooms/{room}/overlay-settings", post_overlay_settings, methods=["POST"]),
        Route("/api/me/streams", get_streams, methods=["GET"]),
    ]
