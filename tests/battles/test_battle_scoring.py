"""Battle scores on one real server: exact under concurrent gifts into both rooms, only inside
the window, once per tx; both rooms' members see start, scores and the end with the winner and
each side's top gifter; a battle whose sweep never runs ends on the next touch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from protocol import Ack, SendGift
from server.auth import TokenIssuer
from server.hub.battlestate import SETTLE_GRACE_MS
from server.money.wallet import SpendRequest
from server.runtime import Runtime
from tests.battles.support import (
    CREATOR_A,
    ROOM_A,
    ROOM_B,
    bearer,
    scores,
    start_battle,
    two_rooms,
    until_redis_time,
    wait_battle,
)
from tests.hub.support import Client, grant, open_client
from tests.support.servers import RunningServer

GIFTS = {"rose": 1, "finger_heart": 5, "doughnut": 30}

pytestmark = pytest.mark.both_modes  # on a cluster too: the rooms of a battle are in two slots


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        yield client


async def gift(client: Client, room: str, tx: str, gift_id: str = "rose", rid: str = "") -> Ack:
    await client.send(SendGift(id=rid or tx, room=room, gift=gift_id, count=1, tx=tx))
    reply = await client.reply(rid or tx)
    assert isinstance(reply, Ack), reply
    return reply


async def side_score(rt: Runtime, room: str) -> int:
    return int(await rt.redis.hget(rt.keys.room_battle(room), "score") or 0)


async def test_concurrent_gifts_into_both_rooms_score_exactly_and_the_winner_is_announced(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await two_rooms(rt)
    senders = [f"fan{i}" for i in range(6)]
    for user in senders:
        await grant(rt, user, 10_000)
    fans = [await open_client(server.ws_url, issuer.mint(u, "viewer")) for u in senders]
    watch_a = await open_client(server.ws_url, issuer.mint("w-a", "viewer"), binary=False)
    watch_b = await open_client(server.ws_url, issuer.mint("w-b", "viewer"))
    try:
        for c in fans:
            await c.join(ROOM_A)
            await c.join(ROOM_B)
        await watch_a.join(ROOM_A)
        await watch_b.join(ROOM_B)
        # Before the start: debited, shown, never scored.
        await gift(fans[0], ROOM_A, "early", "doughnut")

        started = await start_battle(http, issuer, duration_s=3)
        for w, room in ((watch_a, ROOM_A), (watch_b, ROOM_B)):
            msg = await wait_battle(w, lambda m: m.phase == "start")
            assert msg.room == room and msg.battle == started["id"]
            assert scores(msg) == {ROOM_A: 0, ROOM_B: 0}

        # Every sender gifts into both rooms at once, each gift its own tx: real concurrency
        # on both slots (and, per sender, on one wallet).
        plan = [(c, room, f"{i}-{room}-{n}", g)
                for i, c in enumerate(fans) for room in (ROOM_A, ROOM_B)
                for n, g in enumerate(["rose", "finger_heart", "doughnut"] * (2 if room == ROOM_A
                                                                              else 1))]
        acks = await asyncio.gather(*(gift(c, room, tx, g) for c, room, tx, g in plan))
        assert all(not a.duplicate for a in acks)
        expected = {ROOM_A: 0, ROOM_B: 0}
        per_fan: dict[tuple[str, str], int] = {}
        for (c, room, _tx, g) in plan:
            expected[room] += GIFTS[g]
            key = (room, senders[fans.index(c)])
            per_fan[key] = per_fan.get(key, 0) + GIFTS[g]
        # A retried tx is acknowledged again and scores nothing more.
        c, room, tx, g = plan[0]
        assert (await gift(c, room, tx, g, rid="retry")).duplicate

        for w in (watch_a, watch_b):
            await wait_battle(w, lambda m: scores(m) == expected)
        assert {r: await side_score(rt, r) for r in (ROOM_A, ROOM_B)} == expected

        end = await wait_battle(watch_b, lambda m: m.phase == "end")
        # After the window: debited, never scored (the side may or may not be settled yet).
        await gift(fans[1], ROOM_B, "late", "doughnut")
        assert scores(end) == expected
        assert end.result == "win" and end.winner == ROOM_A
        end_a = await wait_battle(watch_a, lambda m: m.phase == "end")
        assert end_a.room == ROOM_A and scores(end_a) == expected
        for side in end.sides:
            top = side.top
            assert top is not None
            best = max(v for (r, _), v in per_fan.items() if r == side.room)
            assert top.coins == best and per_fan[(side.room, top.user)] == best
        r = await http.get(f"/api/rooms/{ROOM_B}/battle", headers=bearer(issuer, "anyone",
                                                                           "viewer"))
        body = r.json()
        assert r.status_code == 200 and body["state"] == "ended" and body["winner"] == ROOM_A
        assert {s["room"]: s["score"] for s in body["sides"]} == expected
        assert await side_score(rt, ROOM_B) == expected[ROOM_B]
    finally:
        await asyncio.gather(*(c.close() for c in [*fans, watch_a, watch_b]))


async def test_a_battle_without_a_sweep_ends_on_the_next_touch(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await rt.components["battle_settler"].stop_sweep()  # as if no process were alive at the end
    await two_rooms(rt)
    await grant(rt, "fan", 1000)
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await fan.join(ROOM_A)
        started = await start_battle(http, issuer, duration_s=1)
        await gift(fan, ROOM_A, "in-window", "finger_heart")
        await until_redis_time(rt, started["ends_at"] + 1000)  # window and grace over
        row = await rt.pool.fetchrow("SELECT state FROM battles WHERE id = $1", started["id"])
        assert row["state"] == "running"  # nobody settled it
        # The touch: a gift into the room (its room event says the side is due).
        await gift(fan, ROOM_A, "touch", "rose")
        end = await wait_battle(fan, lambda m: m.phase == "end")
        assert scores(end) == {ROOM_A: 5, ROOM_B: 0} and end.winner == ROOM_A
        row = await rt.pool.fetchrow(
            "SELECT state, score_a, score_b, result FROM battles WHERE id = $1", started["id"])
        assert dict(row) == {"state": "ended", "score_a": 5, "score_b": 0, "result": "win"}
    finally:
        await fan.close()


async def test_reading_the_rooms_battle_settles_it_when_due(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await rt.components["battle_settler"].stop_sweep()
    await two_rooms(rt)
    started = await start_battle(http, issuer, duration_s=1)
    r = await http.get(f"/api/rooms/{ROOM_A}/battle", headers=bearer(issuer, "x", "viewer"))
    assert r.json()["state"] == "running"
    await until_redis_time(rt, started["ends_at"] + 1000)
    r = await http.get(f"/api/rooms/{ROOM_A}/battle", headers=bearer(issuer, "x", "viewer"))
    body: dict[str, Any] = r.json()
    assert r.status_code == 200 and body["state"] == "ended"
    assert body["result"] == "draw" and body["winner"] is None


@pytest.fixture
async def fan_and_late(server: RunningServer, issuer: TokenIssuer
                       ) -> AsyncIterator[tuple[Client, Client]]:
    """Two live rooms; `fan` (1,000 coins) in blue, `late` connected but in no room yet."""
    await two_rooms(server.runtime)
    await grant(server.runtime, "fan", 1000)
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    late = await open_client(server.ws_url, issuer.mint("late", "viewer"))
    try:
        await fan.join(ROOM_B)
        yield fan, late
    finally:
        await fan.close()
        await late.close()


async def test_a_member_joining_mid_battle_sees_the_scores_so_far(
    http: httpx.AsyncClient, issuer: TokenIssuer, fan_and_late: tuple[Client, Client]
) -> None:
    fan, late = fan_and_late
    await start_battle(http, issuer, duration_s=60)
    await gift(fan, ROOM_B, "b1", "doughnut")
    await late.join(ROOM_A)
    msg = await wait_battle(late, lambda m: True)
    assert msg.room == ROOM_A and scores(msg) == {ROOM_A: 0, ROOM_B: 30}


@pytest.mark.parametrize("how", ["ended", "cancelled"])
async def test_a_member_joining_just_after_the_end_sees_the_result(
    http: httpx.AsyncClient, issuer: TokenIssuer, fan_and_late: tuple[Client, Client], how: str
) -> None:
    fan, late = fan_and_late
    started = await start_battle(http, issuer, duration_s=1 if how == "ended" else 600)
    await gift(fan, ROOM_B, "b1", "doughnut")
    if how == "cancelled":
        r = await http.post(f"/api/battles/{started['id']}/cancel",
                            headers=bearer(issuer, CREATOR_A))
        assert r.status_code == 200, r.text
    end = await wait_battle(fan, lambda m: m.phase == "end")
    await late.join(ROOM_A)
    msg = await wait_battle(late, lambda m: True)  # what the join showed it
    assert (msg.room, msg.phase, msg.battle) == (ROOM_A, "end", started["id"])
    assert (msg.result, msg.winner) == (end.result, end.winner)
    assert (msg.result, msg.winner) == (("win", ROOM_B) if how == "ended"
                                        else ("cancelled", None))
    assert scores(msg) == {ROOM_A: 0, ROOM_B: 30}


async def test_a_gift_debited_in_the_window_and_retried_after_it_scores_by_its_debit_time(
    server: RunningServer, http: httpx.AsyncClient, issuer: TokenIssuer
) -> None:
    """A process debited a gift inside the window and died before its room event: the client's
    retry of the same tx comes after the window. It is judged by when it was debited (kept in the
    tx record, like the ledger's time), so it scores; the end has it."""
    rt = server.runtime
    await rt.components["battle_settler"].stop_sweep()  # nobody settles before the retry
    await two_rooms(rt)
    await grant(rt, "fan", 1000)
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await fan.join(ROOM_A)  # before the battle: a join after its end would settle it
        started = await start_battle(http, issuer, duration_s=1)
        debit = await rt.components["wallet"].spend(
            SpendRequest("fan", ROOM_A, "doughnut", 1, "lost"))  # the room event never ran
        assert debit.ok and started["starts_at"] <= debit.at_ms < started["ends_at"]
        await until_redis_time(rt, started["ends_at"] + SETTLE_GRACE_MS)
        # The retry is the first touch after the end: scored by its debit time, then settled.
        retried = await gift(fan, ROOM_A, "lost", "doughnut")
        assert retried.duplicate  # debited once
        end = await wait_battle(fan, lambda m: m.phase == "end")
        assert scores(end) == {ROOM_A: 30, ROOM_B: 0} and end.winner == ROOM_A
    finally:
        await fan.close()
    assert await rt.components["wallet"].balance("fan") == 970
