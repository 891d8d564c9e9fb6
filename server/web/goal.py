"""`POST /api/rooms/{room}/goal`: the creator sets the room's gift goal (docs/hub.md)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol import ErrorCode, ProtocolError
from protocol.fields import FieldReader
from protocol.limits import MAX_ROOM_ID_LEN, MAX_SAFE_INT
from server.auth import Role
from server.money import streams
from server.money.wallet import valid_ident
from server.web import api
from server.web.problem import HTTPProblem

_GOAL_FIELDS = frozenset({"title", "target"})


async def post_goal(request: Request) -> Response:
    """`POST /api/rooms/{room}/goal` {title, target}: the room's creator (or an admin) sets the
    gift goal, progress restarting at 0 (target 0 clears it); every member gets a `goal` update."""
    rt = request.app.state.runtime
    p = await api.principal(request)
    if p.role not in (Role.CREATOR, Role.ADMIN):
        raise HTTPProblem(403, "forbidden", "only the room's creator sets its goal")
    room = str(request.path_params["room"])
    if not valid_ident(room, MAX_ROOM_ID_LEN):
        raise HTTPProblem(400, "invalid_value", "room: must be 1+ of A-Z a-z 0-9 - . _ ~")
    raw = await request.body()
    try:
        if len(raw) > 4096:
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, "the body exceeds 4096 bytes")
        try:
            data = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(ErrorCode.MALFORMED_FRAME, "the body is not JSON") from None
        if type(data) is not dict:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "the body must be a JSON object")
        r = FieldReader(data, strict=True)
        r.reject_unknown(_GOAL_FIELDS)
        title, target = r.text("title", 128), r.integer("target", 0, MAX_SAFE_INT)
    except ProtocolError as exc:
        raise HTTPProblem(413 if exc.code is ErrorCode.FRAME_TOO_LARGE else 400,
                          exc.code.value, exc.message) from None
    info = await streams.room_info(rt, room)
    if info is None:
        raise HTTPProblem(404, "room_not_found", "no such room")
    if info.creator != p.user and p.role is not Role.ADMIN:
        raise HTTPProblem(403, "forbidden", "the room belongs to another creator")
    await rt.components["realtime"].state.set_goal(room, title, target)
    return JSONResponse({"room": room, "title": title, "target": target, "progress": 0})
