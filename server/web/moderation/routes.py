"""`/api/rooms/{room}/blocks`, `/moderators` and `/audit`: a room's moderation over HTTP.

The caller's token says who acts: the room's creator (a creator token of the user who owns the
room) or one of its moderators (any token of an appointed user but an overlay). Bodies go through
the one JSON body reader; refusals are problem+json with the protocol's codes: `forbidden` (403)
for anyone else, `room_not_found` (404), `not_found` (404) for a block or moderator that is not
there, `invalid_value`/`too_long`/`missing_field` (400) for bad input, which changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.limits import MAX_USER_LEN
from server.auth import Principal
from server.config import Config
from server.live.moderation import Moderation
from server.web.api import principal, room_param
from server.web.body import read_fields
from server.web.paging import page_answer, page_params
from server.web.problem import refusal, refusing

MAX_REASON_LEN = 500

Act = Callable[[str, Principal, str], Awaitable[None]]


def _moderation(request: Request) -> Moderation:
    moderation: Moderation = request.app.state.runtime.components["moderation"]
    return moderation


def _user(value: str) -> str:
    if not value or not value.strip():
        raise refusal("invalid_value", "user: must not be empty")
    if len(value) > MAX_USER_LEN:
        raise refusal("too_long", f"user: at most {MAX_USER_LEN} characters")
    return value


async def _on_path_user(request: Request, act: Act) -> tuple[str, str]:
    """`act(room, caller, user)` for the `{room}` and `{user}` of the path; (room, user)."""
    p, room = await principal(request), room_param(request)
    user = _user(str(request.path_params["user"]))
    await act(room, p, user)
    return room, user


@refusing
async def get_blocks(request: Request) -> Response:
    p, room = await principal(request), room_param(request)
    blocks = await _moderation(request).blocks(room, p)
    return JSONResponse({"room": room, "blocks": [b.to_json() for b in blocks]})


@refusing
async def post_block(request: Request) -> Response:
    p, room = await principal(request), room_param(request)
    r = await read_fields(request, frozenset({"user", "reason"}))
    user, reason = _user(r.text("user", MAX_USER_LEN)), r.text("reason", MAX_REASON_LEN)
    if not reason.strip():
        raise refusal("invalid_value", "reason: must not be empty")
    created = await _moderation(request).block(room, p, user, reason)
    return JSONResponse({"room": room, "user": user, "blocked": True, "created": created})


@refusing
async def delete_block(request: Request) -> Response:
    room, user = await _on_path_user(request, _moderation(request).unblock)
    return JSONResponse({"room": room, "user": user, "blocked": False})


@refusing
async def get_moderators(request: Request) -> Response:
    p, room = await principal(request), room_param(request)
    found = await _moderation(request).moderators(room, p)
    return JSONResponse({"room": room, "moderators": found})


@refusing
async def post_moderator(request: Request) -> Response:
    p, room = await principal(request), room_param(request)
    r = await read_fields(request, frozenset({"user"}))
    user = _user(r.text("user", MAX_USER_LEN))
    created = await _moderation(request).appoint(room, p, user)
    return JSONResponse({"room": room, "user": user, "moderator": True, "created": created})


@refusing
async def delete_moderator(request: Request) -> Response:
    room, user = await _on_path_user(request, _moderation(request).dismiss)
    return JSONResponse({"room": room, "user": user, "moderator": False})


@refusing
async def get_audit(request: Request) -> Response:
    p, room = await principal(request), room_param(request)
    before_id, limit = page_params(request)
    items = await _moderation(request).audit(room, p, before=before_id, limit=limit)
    return JSONResponse({"room": room, **page_answer(items, limit)})


def routes(config: Config) -> list[Route]:
    return [
        Route("/api/rooms/{room}/blocks", get_blocks, methods=["GET"]),
        Route("/api/rooms/{room}/blocks", post_block, methods=["POST"]),
        Route("/api/rooms/{room}/blocks/{user}", delete_block, methods=["DELETE"]),
        Route("/api/rooms/{room}/moderators", get_moderators, methods=["GET"]),
        Route("/api/rooms/{room}/moderators", post_moderator, methods=["POST"]),
        Route("/api/rooms/{room}/moderators/{user}", delete_moderator, methods=["DELETE"]),
        Route("/api/rooms/{room}/audit", get_audit, methods=["GET"]),
    ]
