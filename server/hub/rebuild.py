"""Rooms rebuilt from the Postgres ledger (`giftwire rebuild`, after the money rebuild):

- each room's leaderboard of its current stream: the coins each viewer gave since the stream's
  `started_at` (the room's hash; a room Redis has no hash for has no stream to rebuild), replacing
  what Redis holds, which after a loss is short of the lost gifts;
- each room's set of published transactions (`room_published`, the idempotency of room events)
  within its window, so that a retry of a gift the ledger holds is acknowledged `duplicate` by
  the wallet and is not shown a second time by the room.

The ledger holds what the flusher had written: run it after the ledger streams are drained (the
CLI does). Gift times are the ledger's `stream_ms` (Redis's clock at the spend) against
`started_at` (the server's clock at go-live): one host's clocks in practice.
Not rebuilt: display names (the leaderboard shows user ids until a gifter gives again), goal
progress (Postgres does not know when the goal was set), settled combo ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from server.hub.roomstate import DEDUP_WINDOW_MS
from server.runtime import Runtime

_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class RoomsReport:
    rooms: int  # rooms with gifts in the ledger
    leaderboards: int  # current streams whose leaderboard was rebuilt
    published: int  # transaction ids restored as published


async def rebuild_rooms(rt: Runtime) -> RoomsReport:
    rooms = [r["room"] for r in await rt.pool.fetch(
        "SELECT DISTINCT room FROM ledger_tx WHERE kind = 'gift' AND room IS NOT NULL")]
    boards = 0
    for room in rooms:
        boards += await _leaderboard(rt, room)
    return RoomsReport(len(rooms), boards, await _published(rt))


async def _leaderboard(rt: Runtime, room: str) -> int:
    k = rt.keys
    started = (await rt.redis.hmget(k.room(room), ["started_at"]))[0]
    if started is None:
        return 0
    totals = {r["user_id"]: int(r["coins"]) for r in await rt.pool.fetch(
        """SELECT user_id, sum(coins) AS coins FROM ledger_tx
           WHERE kind = 'gift' AND room = $1 AND stream_ms >= $2 GROUP BY user_id""",
        room, int(started))}
    async with rt.redis.pipeline(transaction=True) as pipe:
        pipe.delete(k.room_leaderboard(room))
        if totals:
            pipe.zadd(k.room_leaderboard(room), totals)
        await pipe.execute()
    return 1


async def _published(rt: Runtime) -> int:
    k = rt.keys
    since = int(time.time() * 1000) - DEDUP_WINDOW_MS
    count = 0
    async with rt.pool.acquire() as conn, conn.transaction():
        cursor = await conn.cursor(
            """SELECT room, user_id, ref, stream_ms FROM ledger_tx
               WHERE kind = 'gift' AND room IS NOT NULL AND stream_ms > $1""", since)
        while rows := await cursor.fetch(_CHUNK):
            async with rt.redis.pipeline(transaction=False) as pipe:
                for r in rows:
                    # NX: a member Redis still holds keeps its own publish time.
                    pipe.zadd(k.room_published(r["room"]),
                              {f"{r['user_id']}:{r['ref']}": r["stream_ms"]}, nx=True)
                await pipe.execute()
            count += len(rows)
    return count
