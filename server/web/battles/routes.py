"""`/api/battles` and `/api/rooms/{room}/battle`: a gift battle's lifecycle over HTTP.

The caller's token says who acts: the inviting room's creator invites (`POST /api/battles`), the
invited room's creator accepts, either creator starts or cancels. Bodies go through the one JSON
body reader; refusals are problem+json with the protocol's codes (docs/battles.md lists them):
`forbidden` (403), `room_not_found` / `not_found` (404), `room_not_live`, `battle_busy`,
`battle_state` (409), `invalid_value` / `out_of_range` / `missing_field` (400). A refused request
changes nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from protocol.limits import MAX_BATTLE_ID_LEN, MAX_ROOM_ID_LEN
from server.config import Config
from server.live.battle_settle import Settler, cancel, settle
from server.live.battles import MAX_DURATION_S, MIN_DURATION_S, Battle, Battles
from server.money.wallet import valid_ident
from server.web.api import principal, room_param, room_reader
from server.web.body import read_fields
from server.web.problem import refusal, refusing


def _battles(request: Request) -> Battles:
    battles: Battles = request.app.state.runtime.components["battles"]
    return battles


def _battle_id(request: Request) -> str:
    battle_id = str(request.path_params["battle"])
    if not valid_ident(battle_id, MAX_BATTLE_ID_LEN):
        raise refusal("not_found", "no such battle")
    return battle_id


async def _view(battles: Battles, b: Battle) -> JSONResponse:
    live = await battles.live_sides(b) if b.state == "running" else None
    return JSONResponse(b.to_json(live))


@refusing
async def post_battle(request: Request) -> Response:
    p = await principal(request)
    r = await read_fields(request, frozenset({"room", "opponent"}))
    room, opponent = r.ident("room", MAX_ROOM_ID_LEN), r.ident("opponent", MAX_ROOM_ID_LEN)
    battles = _battles(request)
    return await _view(battles, await battles.invite(p, room, opponent))


@refusing
async def post_accept(request: Request) -> Response:
    p, battles = await principal(request), _battles(request)
    return await _view(battles, await battles.accept(p, _battle_id(request)))


@refusing
async def post_start(request: Request) -> Response:
    p = await principal(request)
    r = await read_fields(request, frozenset({"duration_s"}))
    duration = r.integer("duration_s", MIN_DURATION_S, MAX_DURATION_S)
    battles = _battles(request)
    return await _view(battles, await battles.start(p, _battle_id(request), duration))


@refusing
async def post_cancel(request: Request) -> Response:
    p, battles = await principal(request), _battles(request)
    return await _view(battles, await cancel(battles, p, _battle_id(request)))


@refusing
async def get_room_battle(request: Request) -> Response:
    """Any token may read a room's battle (what its viewers see); reading settles a battle that
    is due (a touch)."""
    await room_reader(request)  # the overlay's battle bar asks with its key
    room, battles = room_param(request), _battles(request)
    b = await battles.latest(room)
    if b is None:
        raise refusal("not_found", f"room {room} has no battle")
    if b.state == "running":
        settler: Settler = request.app.state.runtime.components["battle_settler"]
        if await settler.is_due(b):
            b = await settle(battles, b)
    return await _view(battles, b)


def routes(config: Config) -> list[Route]:
    return [
        Route("/api/battles", post_battle, methods=["POST"]),
        Route("/api/battles/{battle}/accept", post_accept, methods=["POST"]),
        Route("/api/battles/{battle}/start", post_start, methods=["POST"]),
        Route("/api/battles/{battle}/cancel", post_cancel, methods=["POST"]),
        Route("/api/rooms/{room}/battle", get_room_battle, methods=["GET"]),
    ]
