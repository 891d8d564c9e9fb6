"""`POST /api/rooms/{room}/goal`: the creator sets the room's gift goal (docs/hub.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol.limits import MAX_SAFE_INT
from server.auth import Role
from server.money import streams
from server.web import api
from server.web.body import read_fields
from server.web.problem import refusal

_GOAL_FIELDS = frozenset({"title", "target"})


async def post_goal(request: Request) -> Response:
    """`POST /api/rooms/{room}/goal` {title, target}: the room's creator (or an admin) sets the
    gift goal, progress restarting at 0 (target 0 clears it); every member gets a `goal` update."""
    rt = request.app.state.runtime
    p = await api.principal(request)
    if p.role not in (Role.CREATOR, Role.ADMIN):
        raise refusal("forbidden", "only the room's creator sets its goal")
    room = api.room_param(request)
    r = await read_fields(request, _GOAL_FIELDS)
    title, target = r.text("title", 128), r.integer("target", 0, MAX_SAFE_INT)
    info = await streams.room_info(rt, room)
    if info is None:
        raise refusal("room_not_found", "no such room")
    if info.creator != p.user and p.role is not Role.ADMIN:
        raise refusal("forbidden", "the room belongs to another creator")
    await rt.components["realtime"].state.set_goal(room, title, target)
    return JSONResponse({"room": room, "title": title, "target": target, "progress": 0})
