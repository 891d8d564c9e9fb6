"""A battle on two real server processes sharing one Redis and Postgres: each room is watched on
one process and gifted on the other, so every score crosses processes; then the process that took
one room's gifts is SIGKILLed mid-battle, and the end, seen on the survivor, has every score; and
both processes SIGKILLed, none alive at the end, the next one to start settles every score."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
import pytest

from protocol import Ack, SendGift
from server.auth import TokenIssuer
from server.config import Config
from server.hub.battlestate import SETTLE_GRACE_MS
from server.runtime import Runtime
from tests.battles.support import (
    CREATOR_A,
    CREATOR_B,
    ROOM_A,
    ROOM_B,
    bearer,
    scores,
    two_rooms,
    until_redis_time,
    wait_battle,
)
from tests.hub.support import Client, open_client
from tests.support.servers import RunningServer, subprocess_server

pytestmark = [pytest.mark.slow, pytest.mark.both_modes]


async def _gift(client: Client, room: str, tx: str, gift: str) -> None:
    await client.send(SendGift(id=tx, room=room, gift=gift, count=1, tx=tx))
    assert isinstance(await client.reply(tx), Ack)


async def _fund(http: httpx.AsyncClient, server: RunningServer, issuer: TokenIssuer) -> None:
    admin = bearer(issuer, "root", "admin")
    for user in ("ann", "bo"):
        r = await http.post(server.base_url + "/api/admin/grant", headers=admin,
                            json={"user": user, "coins": 1000, "grant_id": f"g-{user}"})
        assert r.status_code == 200, r.text


async def _start_across(http: httpx.AsyncClient, a: RunningServer, b: RunningServer,
                        issuer: TokenIssuer, starter: tuple[RunningServer, str]
                        ) -> dict[str, Any]:
    """Invited on `a`, accepted on `b`, started (3 s) by `starter` (process, creator)."""
    r = await http.post(a.base_url + "/api/battles", headers=bearer(issuer, CREATOR_A),
                        json={"room": ROOM_A, "opponent": ROOM_B})
    bid = r.json()["id"]
    await http.post(b.base_url + f"/api/battles/{bid}/accept", headers=bearer(issuer, CREATOR_B))
    srv, creator = starter
    r = await http.post(srv.base_url + f"/api/battles/{bid}/start",
                        headers=bearer(issuer, creator), json={"duration_s": 3})
    assert r.status_code == 200, r.text
    started: dict[str, Any] = r.json()
    return started


async def test_scores_cross_processes_and_survive_a_sigkill(
    config: Config, runtime: Runtime, issuer: TokenIssuer
) -> None:
    async with subprocess_server(config) as a, subprocess_server(config) as b:
        await two_rooms(runtime)
        async with httpx.AsyncClient() as http:
            await _fund(http, a, issuer)
            watch_a = await open_client(a.ws_url, issuer.mint("w1", "viewer"))
            watch_b = await open_client(b.ws_url, issuer.mint("w2", "viewer"))
            ann = await open_client(b.ws_url, issuer.mint("ann", "viewer"))  # red, on b
            bo = await open_client(a.ws_url, issuer.mint("bo", "viewer"))  # blue, on a
            try:
                await watch_a.join(ROOM_A)
                await watch_b.join(ROOM_B)
                await ann.join(ROOM_A)
                await bo.join(ROOM_B)
                bid = (await _start_across(http, a, b, issuer, (b, CREATOR_B)))["id"]
                await asyncio.gather(*(_gift(ann, ROOM_A, f"a{i}", "doughnut") for i in range(3)),
                                     *(_gift(bo, ROOM_B, f"b{i}", "finger_heart")
                                       for i in range(4)))
                want = {ROOM_A: 90, ROOM_B: 20}
                for w in (watch_a, watch_b):  # each sees both sides, one of them from afar
                    await wait_battle(w, lambda m: scores(m) == want)
                assert b.process is not None
                b.process.send_signal(signal.SIGKILL)  # took red's gifts; watches blue
                await asyncio.to_thread(b.process.wait, 30)
                end = await wait_battle(watch_a, lambda m: m.phase == "end")
                assert scores(end) == want and end.result == "win" and end.winner == ROOM_A
                row = await runtime.pool.fetchrow(
                    "SELECT state, score_a, score_b FROM battles WHERE id = $1", bid)
                assert dict(row) == {"state": "ended", "score_a": 90, "score_b": 20}
            finally:
                for c in (watch_a, watch_b, ann, bo):
                    await c.close()


async def test_a_battle_whose_processes_all_died_ends_with_every_score_on_a_restarted_one(
    config: Config, runtime: Runtime, issuer: TokenIssuer
) -> None:
    """Every process of both rooms SIGKILLed mid-battle, none alive at its end: the battle is
    still running in Postgres then, and the first process that starts afterwards settles it
    with every acknowledged gift's coins, which a member joining there sees in the `end`."""
    await two_rooms(runtime)
    async with httpx.AsyncClient() as http:
        async with subprocess_server(config) as a, subprocess_server(config) as b:
            await _fund(http, a, issuer)
            ann = await open_client(a.ws_url, issuer.mint("ann", "viewer"))
            bo = await open_client(b.ws_url, issuer.mint("bo", "viewer"))
            try:
                await ann.join(ROOM_A)
                await bo.join(ROOM_B)
                started = await _start_across(http, a, b, issuer, (a, CREATOR_A))
                bid, ends_at = started["id"], started["ends_at"]
                await asyncio.gather(*(_gift(ann, ROOM_A, f"a{i}", "finger_heart")
                                       for i in range(5)),
                                     *(_gift(bo, ROOM_B, f"b{i}", "doughnut") for i in range(2)))
                for srv in (a, b):
                    assert srv.process is not None
                    srv.process.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(srv.process.wait, 30)
            finally:
                for c in (ann, bo):
                    await c.close()
        # No process alive when the window and its grace end: nobody settles it.
        await until_redis_time(runtime, ends_at + SETTLE_GRACE_MS)
        row = await runtime.pool.fetchrow("SELECT state FROM battles WHERE id = $1", bid)
        assert row["state"] == "running"
        async with subprocess_server(config) as c:
            late = await open_client(c.ws_url, issuer.mint("late", "viewer"))
            try:
                await late.join(ROOM_B)
                end = await wait_battle(late, lambda m: m.phase == "end")
            finally:
                await late.close()
    want = {ROOM_A: 25, ROOM_B: 60}  # every acknowledged gift, none twice
    assert (end.battle, scores(end), end.result, end.winner) == (bid, want, "win", ROOM_B)
    row = await runtime.pool.fetchrow(
        "SELECT state, score_a, score_b, winner FROM battles WHERE id = $1", bid)
    assert dict(row) == {"state": "ended", "score_a": 25, "score_b": 60, "winner": ROOM_B}
