"""Top gifters and goal progress are per stream: a new go_live resets them, a retry does not."""

from __future__ import annotations

import asyncio

from protocol import Goal, GoalUpdate, Leaderboard, SendGift
from server.auth import TokenIssuer
from server.money import streams
from tests.hub.support import Client, grant, open_client, setup_room
from tests.support.servers import RunningServer


async def _gift(client: Client, room: str, tx: str, gift: str = "rose") -> None:
    await client.send(SendGift(id=tx, room=room, gift=gift, count=1, tx=tx))
    reply = await client.reply(tx)
    assert getattr(reply, "tx", None) == tx, reply


async def _top_on_join(server: RunningServer, issuer: TokenIssuer, room: str) -> list[object]:
    """The leaderboard a newcomer's `joined` snapshot shows."""
    client = await open_client(server.ws_url, issuer.mint("newcomer", "viewer"))
    try:
        joined = await client.join(room)
        return [(e.user, e.coins) for e in joined.top]
    finally:
        await client.close()


async def test_a_new_stream_starts_with_an_empty_leaderboard_and_goal(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    hook = rt.components["on_room_change"]
    await setup_room(rt, "r")
    await rt.components["realtime"].state.set_goal("r", "mic", 100)
    await grant(rt, "first", 50)
    await grant(rt, "second", 50)
    first = await open_client(server.ws_url, issuer.mint("first", "viewer"))
    second = await open_client(server.ws_url, issuer.mint("second", "viewer"))
    try:
        await first.join("r")
        await _gift(first, "r", "s1")
        before = await second.join("r")
        assert [e.user for e in before.top] == ["first"]
        assert before.goal is not None and before.goal.progress > 0

        await streams.end_stream(rt, "r", on_change=hook)
        await streams.go_live(rt, "r", "creator1", "stream 2", on_change=hook)
        # A member who stayed in the room is told at once.
        await first.wait(lambda ms: [m for m in ms if isinstance(m, Leaderboard) and not m.top])
        await first.wait(
            lambda ms: [m for m in ms if isinstance(m, GoalUpdate) and m.progress == 0]
        )
        late = await open_client(server.ws_url, issuer.mint("late", "viewer"))
        try:
            joined = await late.join("r")
            assert joined.top == ()
            assert joined.goal == Goal(title="mic", target=100, progress=0)
            await _gift(second, "r", "s2")
            top = await late.wait(
                lambda ms: [m for m in ms if isinstance(m, Leaderboard) and m.top]
            )
            assert [e.user for e in top[-1].top] == ["second"]
        finally:
            await late.close()
    finally:
        await first.close()
        await second.close()


async def test_a_retried_go_live_of_a_live_room_keeps_its_stream(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    started = await streams.room_info(rt, "r")
    assert started is not None and started.live
    await grant(rt, "fan", 50)
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await fan.join("r")
        await _gift(fan, "r", "s1")
        retries = await asyncio.gather(*(
            streams.go_live(rt, "r", "creator1", "r stream") for _ in range(20)
        ))
        assert {i.started_at for i in retries} == {started.started_at}
        assert await _top_on_join(server, issuer, "r") == [("fan", 1)]
    finally:
        await fan.close()


async def test_concurrent_go_lives_of_an_ended_room_start_one_stream(
    server: RunningServer, issuer: TokenIssuer
) -> None:
    rt = server.runtime
    await setup_room(rt, "r")
    await grant(rt, "fan", 50)
    fan = await open_client(server.ws_url, issuer.mint("fan", "viewer"))
    try:
        await fan.join("r")
        await _gift(fan, "r", "s1")
        await streams.end_stream(rt, "r")
        infos = await asyncio.gather(*(
            streams.go_live(rt, "r", "creator1", "again") for _ in range(20)
        ))
        assert len({i.started_at for i in infos}) == 1  # one wipe, the rest saw it live
        await _gift(fan, "r", "s2")
        assert await _top_on_join(server, issuer, "r") == [("fan", 1)]
    finally:
        await fan.close()
