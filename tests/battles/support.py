"""Gift battles in tests: two live rooms, the HTTP calls, waiting for Redis's clock."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from protocol import BattleUpdate, ServerMessage
from server.auth import TokenIssuer
from server.live.battles import redis_now_ms
from tests.hub.support import Client, setup_room

ROOM_A, CREATOR_A = "red", "creator-red"
ROOM_B, CREATOR_B = "blue", "creator-blue"


def bearer(issuer: TokenIssuer, user: str, role: str = "creator") -> dict[str, str]:
    return {"Authorization": "Bearer " + issuer.mint(user, role)}


async def two_rooms(rt: Any) -> None:
    await setup_room(rt, ROOM_A, CREATOR_A)
    await setup_room(rt, ROOM_B, CREATOR_B)


async def start_battle(http: httpx.AsyncClient, issuer: TokenIssuer, duration_s: int
                       ) -> dict[str, Any]:
    """Invite (red -> blue), accept, start: the started battle's JSON."""
    r = await http.post("/api/battles", json={"room": ROOM_A, "opponent": ROOM_B},
                        headers=bearer(issuer, CREATOR_A))
    assert r.status_code == 200, r.text
    battle = r.json()["id"]
    r = await http.post(f"/api/battles/{battle}/accept", headers=bearer(issuer, CREATOR_B))
    assert r.status_code == 200, r.text
    r = await http.post(f"/api/battles/{battle}/start", json={"duration_s": duration_s},
                        headers=bearer(issuer, CREATOR_A))
    assert r.status_code == 200, r.text
    started: dict[str, Any] = r.json()
    assert started["state"] == "running"
    return started


async def until_redis_time(rt: Any, ms: int) -> None:
    """Wait until Redis's clock (the clock of battle windows) reaches `ms`: what is under test
    is a time window, so the test waits for the time itself."""
    while True:
        now = await redis_now_ms(rt)
        if now >= ms:
            return
        await asyncio.sleep((ms - now) / 1000)  # until then (Redis's clock may run apart)


def battle_messages(client: Client, phase: str | None = None) -> list[BattleUpdate]:
    return [m for m in client.messages
            if isinstance(m, BattleUpdate) and (phase is None or m.phase == phase)]


async def wait_battle(client: Client, predicate: Any) -> BattleUpdate:
    def find(msgs: list[ServerMessage]) -> BattleUpdate | None:
        for m in reversed(msgs):
            if isinstance(m, BattleUpdate) and predicate(m):
                return m
        return None

    found: BattleUpdate = await client.wait(find)
    return found


def scores(msg: BattleUpdate) -> dict[str, int]:
    return {s.room: s.score for s in msg.sides}
