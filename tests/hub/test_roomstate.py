"""Room state on a real server: one cluster slot per room script, goal, lifecycle, viewers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest

from protocol import (
    ErrorReply,
    GoalUpdate,
    Join,
    RoomStatus,
    SendGift,
    ViewerCount,
)
from server.auth import TokenIssuer
from server.live.battles import redis_now_ms
from server.money import streams
from server.storage.keys import cluster_slot
from server.storage.scripts import LUA_DIR
from tests.hub.support import grant, open_client, setup_room
from tests.support.servers import RunningServer

# The same tests on single Redis and on the local Redis Cluster.
pytestmark = pytest.mark.both_modes

ROOM_SCRIPTS = {p.stem for p in LUA_DIR.glob("room_*.lua")}


async def test_every_room_script_touches_one_slot_and_every_one_is_exercised(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    runner = rt.components["scripts"]
    state = rt.components["realtime"].state
    calls: list[tuple[str, tuple[str, ...]]] = []

    def observe(name: str, keys: Sequence[str]) -> None:
        calls.append((name, tuple(keys)))

    runner.observer = observe
    try:
        for i in range(5):
            room = f"room{i}"
            await setup_room(rt, room)
            await grant(rt, f"u{i}", 10)
            client = await open_client(server.ws_url, issuer.mint(f"u{i}", "viewer"))
            await client.join(room)
            await client.send(SendGift(id="g", room=room, gift="rose", count=1, tx="t1", combo="c"))
            await client.reply("g")
            await state.settle_combos(room)
            await state.settle_combos(room, sender=f"u{i}", combo="c")
            await state.since(room, "", 0, 10)
            await state.set_goal(room, "goal", 10)
            await state.refresh_presence(room, ["x"])
            sides = rt.components["realtime"].hub.battles  # a battle's side in the room slot
            now = await redis_now_ms(rt)
            assert await sides.open(room, f"b{i}", now, now + 60_000, "elsewhere", "creator1")
            assert (await sides.read(room)).battle == f"b{i}"
            assert (await sides.close(room, f"b{i}", now=True))[0] == "closed"
            await client.close()
    finally:
        runner.observer = None
    room_calls = [(n, k) for n, k in calls if n.startswith("room_")]
    assert {n for n, _ in room_calls} == ROOM_SCRIPTS
    for name, keys in room_calls:
        assert len({cluster_slot(k) for k in keys}) == 1, f"{name}: {keys}"
    assert len({cluster_slot(k[0]) for _, k in room_calls}) > 1


async def test_goal_progress_and_room_lifecycle_reach_members(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r", creator="cr")
    await grant(rt, "fan", 100)
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await fan.join("r")
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            body = {"title": "new mic", "target": 50}

            def auth(user: str) -> dict[str, str]:
                return {"authorization": "Bearer " + issuer.mint(user, "creator")}

            other = await http.post("/api/rooms/r/goal", json=body, headers=auth("x"))
            assert other.status_code == 403 and other.json()["code"] == "forbidden"
            ok = await http.post("/api/rooms/r/goal", json=body, headers=auth("cr"))
            assert ok.status_code == 200, ok.text
        await fan.wait(lambda ms: [m for m in ms if isinstance(m, GoalUpdate)])
        await fan.send(SendGift(id="g", room="r", gift="finger_heart", count=2, tx="t"))
        await fan.reply("g")
        goal = await fan.wait(
            lambda ms: [m for m in ms if isinstance(m, GoalUpdate) and m.progress == 10]
        )
        assert goal[-1].target == 50 and goal[-1].title == "new mic"
        late = await open_client(server.ws_url, issuer.mint("late", "viewer"))
        joined = await late.join("r")
        assert joined.goal is not None and joined.goal.progress == 10
        await late.close()
        await streams.end_stream(rt, "r", on_change=rt.components["on_room_change"])
        status = await fan.wait(lambda ms: [m for m in ms if isinstance(m, RoomStatus)])
        assert status[-1].live is False
        await fan.send(SendGift(id="g2", room="r", gift="rose", count=1, tx="t2"))
        err = await fan.reply("g2")
        assert isinstance(err, ErrorReply) and err.code == "room_ended"
        await fan.send(Join(id="j", room="nowhere"))
        err = await fan.reply("j")
        assert isinstance(err, ErrorReply) and err.code == "room_not_found"
        leftovers = [k async for k in rt.redis.scan_iter(match=f"{rt.config.key_prefix}*nowhere*")]
        assert leftovers == []  # joining made-up rooms writes nothing
    finally:
        await fan.close()


async def test_viewer_count_counts_viewers_not_overlays_and_drops_leavers(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r", creator="cr")
    a = await open_client(server.ws_url, issuer.mint("a", "viewer"))
    b = await open_client(server.ws_url, issuer.mint("b", "viewer"))
    overlay = await open_client(server.ws_url, issuer.mint("cr", "overlay", room="r"))
    try:
        await a.join("r")
        await b.join("r")
        joined = await overlay.join("r")
        assert joined.viewers == 2
        await b.close()
        counts = await a.wait(
            lambda ms: [m for m in ms if isinstance(m, ViewerCount) and m.count == 1]
        )
        assert counts[-1].room == "r"
    finally:
        await a.close()
        await overlay.close()


async def test_the_same_tx_published_concurrently_makes_exactly_one_event(
    server: RunningServer,
) -> None:
    state = server.runtime.components["realtime"].state
    await setup_room(server.runtime, "r")

    async def publish(tx: str) -> int | None:
        seq: int | None = await state.publish_gift(
            "r", sender="u", name="U", tx=tx, gift="rose", count=1, coins=1
        )
        return seq

    results = await asyncio.gather(*(publish("same") for _ in range(50)))
    assert sorted(r for r in results if r is not None) == [1]
    others = await asyncio.gather(*(publish(f"t{i}") for i in range(50)))
    assert sorted(s for s in others if s is not None) == list(range(2, 52))
    since = await state.since("r", "", 0, 100)
    assert since.complete and len(since.events) == 51
