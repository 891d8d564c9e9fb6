"""A creator's earnings per stream, for the dashboard: diamonds credited between a stream's start
and its end, summed from the Postgres ledger.

Streams are recorded as rooms go live and end (the realtime component's room-change hook calls
`record`); a retried go_live of a live room keeps its start, so it records nothing new. The
ledger is written by the flusher a moment after each gift, so the live stream's sum trails the
wallet by that moment (`GET /api/me/earnings` reads the wallet itself).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.runtime import Runtime


@dataclass(frozen=True, slots=True)
class StreamEarnings:
    room: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    diamonds: int
    gifts: int

    def to_json(self) -> dict[str, Any]:
        return {"room": self.room, "started_at": self.started_at.isoformat(),
                "ended_at": self.ended_at.isoformat() if self.ended_at else None,
                "diamonds": self.diamonds, "gifts": self.gifts}


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


async def record(rt: Runtime, room: str, creator: str, live: bool, started_at: int,
                 ended_at: int) -> None:
    """A stream started (live) or ended; times in ms since the epoch, as the room hash has them."""
    if not started_at:
        return
    if live:
        await rt.pool.execute(
            "INSERT INTO creator_streams (room, creator, started_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (room, started_at) DO NOTHING", room, creator, _at(started_at))
    else:
        await rt.pool.execute(
            "INSERT INTO creator_streams (room, creator, started_at, ended_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (room, started_at) "
            "DO UPDATE SET ended_at = EXCLUDED.ended_at",
            room, creator, _at(started_at), _at(ended_at or started_at))


async def per_stream(rt: Runtime, creator: str, room: str | None = None,
                     limit: int = 20) -> list[StreamEarnings]:
    """The creator's latest streams (of one room, or all), newest first, with their diamonds."""
    rows = await rt.pool.fetch(
        """
        SELECT s.room, s.started_at, s.ended_at,
               coalesce(sum(l.diamonds), 0)::bigint AS diamonds, count(l.id)::bigint AS gifts
        FROM (SELECT * FROM creator_streams
              WHERE creator = $1 AND ($2::text IS NULL OR room = $2)
              ORDER BY started_at DESC LIMIT $3) s
        LEFT JOIN ledger_tx l
          ON l.user_id = s.creator AND l.kind = 'credit' AND l.room = s.room
         AND l.ts >= s.started_at AND (s.ended_at IS NULL OR l.ts <= s.ended_at)
        GROUP BY s.room, s.started_at, s.ended_at
        ORDER BY s.started_at DESC
        """,
        creator, room, limit)
    return [StreamEarnings(r["room"], r["started_at"], r["ended_at"], r["diamonds"], r["gifts"])
            for r in rows]
