"""The battle HTTP API's refusals: each is a problem response with its documented code and
status, and changes nothing (the battles table and both rooms' sides stay as they were)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.auth import TokenIssuer
from server.money import streams
from server.runtime import Runtime
from tests.battles.support import (
    CREATOR_A,
    CREATOR_B,
    ROOM_A,
    ROOM_B,
    bearer,
    start_battle,
    two_rooms,
)
from tests.hub.support import setup_room
from tests.support.servers import RunningServer

pytestmark = pytest.mark.both_modes  # on a cluster too: the rooms of a battle are in two slots


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        yield client


async def snapshot(rt: Runtime) -> Any:
    rows = await rt.pool.fetch("SELECT * FROM battles ORDER BY id")
    sides = [await rt.redis.hgetall(rt.keys.room_battle(r)) for r in (ROOM_A, ROOM_B, "green")]
    return [dict(r) for r in rows], sides


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def test_every_refusal_has_its_code_and_changes_nothing(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await two_rooms(rt)
    await setup_room(rt, "green", "creator-green")
    await setup_room(rt, "gone", "creator-gone")
    await streams.end_stream(rt, "gone")
    a, b = bearer(issuer, CREATOR_A), bearer(issuer, CREATOR_B)
    invite = {"room": ROOM_A, "opponent": ROOM_B}

    async def check(method: str, url: str, status: int, code: str, **kw: Any) -> None:
        before = await snapshot(rt)
        refused(await http.request(method, url, **kw), status, code)
        assert await snapshot(rt) == before, (url, code)

    await check("POST", "/api/battles", 401, "unauthorized", json=invite)
    await check("POST", "/api/battles", 403, "forbidden", json=invite, headers=b)
    await check("POST", "/api/battles", 403, "forbidden", json=invite,
                headers=bearer(issuer, CREATOR_A, "viewer"))
    await check("POST", "/api/battles", 400, "invalid_value",
                json={"room": ROOM_A, "opponent": ROOM_A}, headers=a)
    await check("POST", "/api/battles", 404, "room_not_found",
                json={"room": ROOM_A, "opponent": "nowhere"}, headers=a)
    await check("POST", "/api/battles", 409, "room_not_live",
                json={"room": ROOM_A, "opponent": "gone"}, headers=a)
    await check("POST", "/api/battles", 400, "missing_field", json={"room": ROOM_A}, headers=a)
    await check("POST", "/api/battles", 400, "unknown_field",
                json={**invite, "extra": 1}, headers=a)

    r = await http.post("/api/battles", json=invite, headers=a)
    assert r.status_code == 200, r.text
    battle = r.json()
    assert battle["state"] == "invited" and [s["room"] for s in battle["sides"]] == [ROOM_A, ROOM_B]
    bid = battle["id"]
    # One open battle per room, whichever side it is on.
    await check("POST", "/api/battles", 409, "battle_busy", json=invite, headers=a)
    await check("POST", "/api/battles", 409, "battle_busy",
                json={"room": "green", "opponent": ROOM_B},
                headers=bearer(issuer, "creator-green"))
    await check("POST", f"/api/battles/{bid}/start", 409, "battle_state",
                json={"duration_s": 10}, headers=a)
    await check("POST", f"/api/battles/{bid}/accept", 403, "forbidden", headers=a)
    await check("POST", "/api/battles/nope/accept", 404, "not_found", headers=b)
    await check("POST", "/api/battles/bad%20id/accept", 404, "not_found", headers=b)

    r = await http.post(f"/api/battles/{bid}/accept", headers=b)
    assert r.status_code == 200 and r.json()["state"] == "accepted"
    await check("POST", f"/api/battles/{bid}/accept", 409, "battle_state", headers=b)
    for duration in (0, 3601):
        await check("POST", f"/api/battles/{bid}/start", 400, "out_of_range",
                    json={"duration_s": duration}, headers=b)
    await check("POST", f"/api/battles/{bid}/start", 400, "wrong_type",
                json={"duration_s": "60"}, headers=b)
    await check("POST", f"/api/battles/{bid}/start", 403, "forbidden",
                json={"duration_s": 60}, headers=bearer(issuer, "creator-green"))
    await check("POST", f"/api/battles/{bid}/cancel", 403, "forbidden",
                headers=bearer(issuer, "creator-green"))
    await check("GET", "/api/rooms/green/battle", 404, "not_found",
                headers=bearer(issuer, "x", "viewer"))

    r = await http.post(f"/api/battles/{bid}/cancel", headers=b)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    await check("POST", f"/api/battles/{bid}/cancel", 409, "battle_state", headers=a)


async def test_a_running_battle_cancelled_keeps_its_scores_and_frees_both_rooms(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await two_rooms(rt)
    started = await start_battle(http, issuer, duration_s=600)
    r = await http.post(f"/api/battles/{started['id']}/cancel", headers=bearer(issuer, CREATOR_B))
    body = r.json()
    assert r.status_code == 200 and body["state"] == "cancelled"
    assert body["result"] == "cancelled" and body["winner"] is None
    # Both sides are closed: a new battle between the same rooms can start at once.
    again = await start_battle(http, issuer, duration_s=600)
    assert again["id"] != started["id"]


async def test_a_room_whose_stream_ended_cannot_start(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await two_rooms(rt)
    r = await http.post("/api/battles", json={"room": ROOM_A, "opponent": ROOM_B},
                        headers=bearer(issuer, CREATOR_A))
    bid = r.json()["id"]
    await http.post(f"/api/battles/{bid}/accept", headers=bearer(issuer, CREATOR_B))
    await streams.end_stream(rt, ROOM_B)
    before = await snapshot(rt)
    r = await http.post(f"/api/battles/{bid}/start", json={"duration_s": 60},
                        headers=bearer(issuer, CREATOR_A))
    refused(r, 409, "room_not_live")
    assert await snapshot(rt) == before
