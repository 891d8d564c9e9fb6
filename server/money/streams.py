"""Room lifecycle: a creator goes live, the stream ends.

The room's own hash (`keys.room(room)`: creator, live, title, started_at, ended_at) is what the
hub reads for `joined` snapshots. The spend script cannot read it (another slot), so every wallet
shard holds a copy of the live rooms (`keys.live_rooms(shard)`: room -> creator). Going live writes
the room hash first and the shard copies after; ending removes the shard copies first: so a spend
is never accepted for a room whose hash says it is not live, except for the instant of the
end-of-stream write itself (a gift in flight as the stream ends, which is fair).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgpack
from redis.exceptions import WatchError

from server.runtime import Runtime
from server.storage.pubsub import publish

OnChange = Callable[["RoomInfo"], Awaitable[None]]


class RoomOwnedError(Exception):
    """The room belongs to another creator."""


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room: str
    creator: str
    live: bool
    title: str = ""
    started_at: int = 0  # ms since the epoch
    ended_at: int = 0


def _s(value: bytes | None) -> str:
    return value.decode() if value else ""


async def room_info(rt: Runtime, room: str) -> RoomInfo | None:
    raw = await rt.redis.hgetall(rt.keys.room(room))
    if not raw or b"creator" not in raw:
        return None
    return RoomInfo(
        room=room,
        creator=_s(raw.get(b"creator")),
        live=raw.get(b"live") == b"1",
        title=_s(raw.get(b"title")),
        started_at=int(raw.get(b"started_at") or 0),
        ended_at=int(raw.get(b"ended_at") or 0),
    )


async def go_live(
    rt: Runtime, room: str, creator: str, title: str = "", *, on_change: OnChange | None = None
) -> RoomInfo:
    """Start the room's stream (the first creator to go live owns the room).

    A new stream (the room was not live) starts with an empty leaderboard and the goal's progress
    at 0; a retried go_live of a live room keeps its stream (started_at, leaderboard, goal) and
    only takes the new title. Idempotent: a retry after a failure part-way completes the work.
    """
    if not creator:
        raise ValueError("a room needs a creator")
    started_at = await _start_stream(rt, room, creator, title)
    # The shard copies are written after the room slot says live (see the module docstring);
    # rewriting them on a retry repairs a go_live that failed between the two steps.
    async with rt.redis.pipeline(transaction=False) as pipe:
        for shard in range(rt.keys.wallet_shards):
            pipe.hset(rt.keys.live_rooms(shard), room, creator)
        await pipe.execute()
    info = RoomInfo(room, creator, True, title, started_at)
    if on_change is not None:
        await on_change(info)
    return info


async def _start_stream(rt: Runtime, room: str, creator: str, title: str) -> int:
    """The room slot's part of go_live, one MULTI on `{r:<room>}` keys; returns started_at.

    Optimistic (WATCH) rather than a Lua script so that it needs no script runner (CLI, tests);
    the room hash changes only on go_live/end_stream and the goal only while live, so a retry is
    rare. No spend is accepted for an ended room, so nothing scores between the wipe and the
    shard copies going up.
    """
    k = rt.keys
    meta, goal = k.room(room), k.room_goal(room)
    async with rt.redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(meta)
                owner, live, started = await pipe.hmget(meta, "creator", "live", "started_at")
                if owner is not None and owner.decode() != creator:
                    raise RoomOwnedError(f"room {room} belongs to another creator")
                if live == b"1":
                    pipe.multi()
                    pipe.hset(meta, "title", title)
                    await pipe.execute()
                    return int(started or 0)
                await pipe.watch(goal)
                g_title, g_target = await pipe.hmget(goal, "title", "target")
                now = int(time.time() * 1000)
                pipe.multi()
                pipe.hsetnx(meta, "creator", creator)
                pipe.delete(k.room_leaderboard(room), k.room_names(room))
                env: dict[str, object] = {"k": "st", "top": []}
                if g_target is not None:
                    pipe.hset(goal, "progress", 0)
                    env["goal"] = {"title": (g_title or b"").decode(),
                                   "target": int(g_target), "progress": 0}
                pipe.hset(meta, mapping={"live": "1", "title": title, "started_at": now,
                                         "ended_at": 0})
                # Members still in the room from the last stream see the reset at once.
                publish(pipe, k.room_channel(room), msgpack.packb(env))
                await pipe.execute()
                return now
            except WatchError:
                continue


async def end_stream(rt: Runtime, room: str, *, on_change: OnChange | None = None) -> RoomInfo:
    """End the room's stream; gifts to it are refused with `room_ended` from now on."""
    info = await room_info(rt, room)
    if info is None:
        raise KeyError(room)
    async with rt.redis.pipeline(transaction=False) as pipe:
        for shard in range(rt.keys.wallet_shards):
            pipe.hdel(rt.keys.live_rooms(shard), room)
        await pipe.execute()
    now = int(time.time() * 1000)
    await rt.redis.hset(rt.keys.room(room), mapping={"live": "0", "ended_at": now})
    info = RoomInfo(room, info.creator, False, info.title, info.started_at, now)
    if on_change is not None:
        await on_change(info)
    return info
