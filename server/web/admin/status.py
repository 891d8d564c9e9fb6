"""The operator view's one JSON document: the whole deployment as Redis and the heartbeats see it.

- processes: each server process's last heartbeat (heartbeat.py), and their totals;
- rooms: live rooms (the live-room copy every wallet shard holds, shard 0's), each with its viewers
  (presence entries not yet expired: every process's) and events per second over the last
  `RATE_WINDOW_S` (entries of its history stream, whose ids are Redis times);
- ledger: per ledger stream, the entries not yet in Postgres (acknowledged entries are trimmed)
  and the age of the oldest;
- reconcile: the last reconcile started from the view (reconcile.py).
"""

from __future__ import annotations

import time
from typing import Any

from server.money.lag import stream_lag
from server.runtime import Runtime
from server.web.admin.heartbeat import read_processes
from server.web.admin.reconcile import current_result

RATE_WINDOW_S = 10
MAX_ROOMS = 100  # the view lists at most this many live rooms (the most watched first)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def live_rooms(rt: Runtime) -> list[dict[str, Any]]:
    redis, k = rt.redis, rt.keys
    rooms: dict[str, str] = {}
    async for room, creator in redis.hscan_iter(k.live_rooms(0), count=MAX_ROOMS):
        rooms[_s(room)] = _s(creator)
        if len(rooms) >= 5 * MAX_ROOMS:
            break
    names = sorted(rooms)
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for room in names:
            pipe.zcount(k.room_presence(room), now_ms, "+inf")
            pipe.xrange(k.room_history(room), min=str(now_ms - RATE_WINDOW_S * 1000), max="+",
                        count=rt.config.history_maxlen)
        replies = await pipe.execute()
    out = [{"room": room, "creator": rooms[room], "viewers": int(replies[2 * i]),
            "events_per_s": _rate(replies[2 * i + 1], now_ms, rt.config.history_maxlen)}
           for i, room in enumerate(names)]
    out.sort(key=lambda r: (-r["viewers"], -r["events_per_s"], r["room"]))
    return out[:MAX_ROOMS]


def _rate(entries: list[Any], now_ms: int, cap: int) -> float:
    """Events per second from a room's history entries of the window (ids are Redis ms times);
    when the read stopped at `cap` entries, over the span they cover instead of the window."""
    if not entries:
        return 0.0
    span_s = RATE_WINDOW_S
    if len(entries) >= cap:
        span_s = max(0.001, (now_ms - int(_s(entries[0][0]).partition("-")[0])) / 1000)
    return round(len(entries) / span_s, 1)


async def ledger_lag(rt: Runtime) -> list[dict[str, Any]]:
    streams = rt.keys.ledger_streams()
    lags = await stream_lag(rt.redis, streams)
    now_ms = time.time() * 1000
    return [{"shard": shard, "stream": stream, "entries": lag.entries,
             "oldest_s": round(max(0.0, now_ms - lag.oldest_ms) / 1000, 1)
             if lag.oldest_ms is not None else 0.0}
            for shard, (stream, lag) in enumerate(zip(streams, lags, strict=True))]


async def deployment_status(rt: Runtime) -> dict[str, Any]:
    processes = await read_processes(rt)
    ledger = await ledger_lag(rt)
    totals = {key: sum(int(p.get(key) or 0) for p in processes)
              for key in ("connections", "slow_disconnects", "rate_limited", "errors")}
    totals["events_per_s"] = round(sum(float(p.get("events_per_s") or 0) for p in processes), 1)
    totals["deliveries_per_s"] = round(
        sum(float(p.get("deliveries_per_s") or 0) for p in processes), 1)
    return {
        "at": int(time.time() * 1000),
        "processes": processes,
        "totals": totals,
        "rooms": await live_rooms(rt),
        "ledger": ledger,
        "ledger_lag": sum(s["entries"] for s in ledger),
        "reconcile": await current_result(rt),
    }
