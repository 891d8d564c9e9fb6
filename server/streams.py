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

from server.runtime import Runtime

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
    """Start (or restart) the room's stream; the first creator to go live owns the room."""
    if not creator:
        raise ValueError("a room needs a creator")
    key = rt.keys.room(room)
    await rt.redis.hsetnx(key, "creator", creator)
    owner = _s(await rt.redis.hget(key, "creator"))
    if owner != creator:
        raise RoomOwnedError(f"room {room} belongs to another creator")
    now = int(time.time() * 1000)
    await rt.redis.hset(key, mapping={"live": "1", "title": title, "started_at": now,
                                      "ended_at": 0})
    async with rt.redis.pipeline(transaction=False) as pipe:
        for shard in range(rt.keys.wallet_shards):
            pipe.hset(rt.keys.live_rooms(shard), room, creator)
        await pipe.execute()
    info = RoomInfo(room, creator, True, title, now)
    if on_change is not None:
        await on_change(info)
    return info


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
