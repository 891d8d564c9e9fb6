"""Gift battles between two live rooms: invite, accept, start (a timed window), cancel, read.

Postgres is the durable record (`battles`, migration 0005): who invited whom, the state
(invited -> accepted -> running -> ended, or cancelled before the end), the window and the final
result. The running scores live in Redis, each room's side in its own slot, scored by
`room_event.lua` atomically with each gift's room event (server/hub/battlestate.py); settling
reads both sides once closed (server/live/battle_settle.py). docs/battles.md has the lifecycle.

A room is in at most one open (invited, accepted or running) battle: checked under a Postgres
advisory lock per room, and again by `room_battle_open.lua` in the room's slot when it starts.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from protocol import BattlePhase, BattleSide, BattleUpdate, Role, TopEntry
from server.auth import Principal
from server.hub.battlestate import BattleSides, envelope
from server.hub.rooms import HubError
from server.money import streams
from server.runtime import Runtime
from server.storage.pubsub import publish

# A battle's window, seconds: TikTok's are 5 minutes; an hour bounds what one battle holds open.
MIN_DURATION_S = 1
MAX_DURATION_S = 3600
OPEN_STATES = ("invited", "accepted", "running")

_COLUMNS = ("id, room_a, creator_a, room_b, creator_b, state, duration_s, start_ms, end_ms, "
            "score_a, score_b, top_a, top_b, result, winner, created_at")


async def redis_now_ms(rt: Runtime) -> int:
    """Redis's clock, ms: the clock that scores gifts and stamps the ledger."""
    sec, usec = await rt.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


class BattleError(HubError):
    """Refused, with the protocol's stable code (forbidden, room_not_found, not_found,
    room_not_live, battle_busy, battle_state, invalid_value, out_of_range)."""


def _top(raw: Any) -> TopEntry | None:
    if raw is None:
        return None
    t = json.loads(raw) if isinstance(raw, str) else raw
    return TopEntry(user=t["user"], name=t["name"], coins=int(t["coins"]))


def top_json(top: TopEntry | None) -> str | None:
    return None if top is None else json.dumps(top.to_dict())


@dataclass(frozen=True, slots=True)
class Battle:
    id: str
    room_a: str
    creator_a: str
    room_b: str
    creator_b: str
    state: str
    duration_s: int | None
    start_ms: int | None
    end_ms: int | None
    score_a: int | None
    score_b: int | None
    top_a: TopEntry | None
    top_b: TopEntry | None
    result: str | None
    winner: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Any) -> Battle:
        values = dict(row)
        values["top_a"], values["top_b"] = _top(values["top_a"]), _top(values["top_b"])
        return cls(**values)

    def sides(self, score_a: int = 0, score_b: int = 0, top_a: TopEntry | None = None,
              top_b: TopEntry | None = None) -> tuple[BattleSide, BattleSide]:
        return (BattleSide(room=self.room_a, creator=self.creator_a, score=score_a, top=top_a),
                BattleSide(room=self.room_b, creator=self.creator_b, score=score_b, top=top_b))

    def message(self, room: str, phase: BattlePhase, sides: tuple[BattleSide, BattleSide]
                ) -> BattleUpdate:
        return BattleUpdate(room=room, battle=self.id, phase=phase.value,
                            starts_at=self.start_ms or 0, ends_at=self.end_ms or 0, sides=sides,
                            result=self.result, winner=self.winner)

    def to_json(self, live: tuple[BattleSide, BattleSide] | None = None) -> dict[str, Any]:
        """The HTTP view; `live`: the running scores read from Redis."""
        sides = live or self.sides(self.score_a or 0, self.score_b or 0, self.top_a, self.top_b)
        return {
            "id": self.id, "state": self.state, "duration_s": self.duration_s,
            "starts_at": self.start_ms, "ends_at": self.end_ms,
            "sides": [s.to_dict() for s in sides], "result": self.result,
            "winner": self.winner, "created_at": self.created_at.isoformat(),
        }


class Battles:
    def __init__(self, rt: Runtime, sides: BattleSides) -> None:
        self.rt = rt
        self.sides = sides

    # -- reading ------------------------------------------------------------------------------
    async def get(self, battle_id: str) -> Battle:
        row = await self.rt.pool.fetchrow(f"SELECT {_COLUMNS} FROM battles WHERE id = $1",
                                          battle_id)
        if row is None:
            raise BattleError("not_found", "no such battle")
        return Battle.of(row)

    async def latest(self, room: str) -> Battle | None:
        """The room's open battle, else its most recent one."""
        row = await self.rt.pool.fetchrow(
            f"""SELECT {_COLUMNS} FROM battles WHERE room_a = $1 OR room_b = $1
                ORDER BY (state IN ('invited', 'accepted', 'running')) DESC, created_at DESC
                LIMIT 1""", room)
        return None if row is None else Battle.of(row)

    async def live_sides(self, b: Battle) -> tuple[BattleSide, BattleSide]:
        """The running scores of a battle, from both rooms' slots."""
        a, other = await self.sides.read(b.room_a), await self.sides.read(b.room_b)
        return b.sides(a.score if a.battle == b.id else 0, other.score if other.battle == b.id
                       else 0, a.top if a.battle == b.id else None,
                       other.top if other.battle == b.id else None)

    # -- who may do what ----------------------------------------------------------------------
    async def _live_room(self, room: str) -> streams.RoomInfo:
        info = await streams.room_info(self.rt, room)
        if info is None:
            raise BattleError("room_not_found", f"no room {room}")
        if not info.live:
            raise BattleError("room_not_live", f"room {room} is not live")
        return info

    @staticmethod
    def _creator_of(who: Principal, creators: tuple[str, ...], refusal: str) -> None:
        if who.role is not Role.CREATOR or who.user not in creators:
            raise BattleError("forbidden", refusal)

    # -- the lifecycle ------------------------------------------------------------------------
    async def invite(self, who: Principal, room: str, opponent: str) -> Battle:
        if room == opponent:
            raise BattleError("invalid_value", "a room cannot battle itself")
        mine = await self._live_room(room)
        self._creator_of(who, (mine.creator,), "only the room's creator may do this")
        theirs = await self._live_room(opponent)
        async with self.rt.pool.acquire() as conn, conn.transaction():
            for name in sorted((room, opponent)):  # sorted: two invites cannot deadlock
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('battle:' || $1))",
                                   name)
            busy = await conn.fetchval(
                """SELECT room_a FROM battles WHERE state = ANY($2::text[])
                   AND (room_a = ANY($1::text[]) OR room_b = ANY($1::text[])) LIMIT 1""",
                [room, opponent], list(OPEN_STATES))
            if busy is not None:
                raise BattleError("battle_busy", "a room is already in an open battle")
            row = await conn.fetchrow(
                f"""INSERT INTO battles (id, room_a, creator_a, room_b, creator_b, state)
                    VALUES ($1, $2, $3, $4, $5, 'invited') RETURNING {_COLUMNS}""",
                uuid.uuid4().hex, room, mine.creator, opponent, theirs.creator)
        return Battle.of(row)

    async def accept(self, who: Principal, battle_id: str) -> Battle:
        b = await self.get(battle_id)
        self._creator_of(who, (b.creator_b,), "only the invited room's creator may do this")
        return await self.move(b, "invited", "accepted")

    async def start(self, who: Principal, battle_id: str, duration_s: int) -> Battle:
        if not MIN_DURATION_S <= duration_s <= MAX_DURATION_S:
            raise BattleError("out_of_range",
                              f"duration_s: {MIN_DURATION_S} to {MAX_DURATION_S} seconds")
        b = await self.get(battle_id)
        self._creator_of(who, (b.creator_a, b.creator_b), "only the battle's creators may start it")
        if b.state != "accepted":
            raise BattleError("battle_state", f"the battle is {b.state}, not accepted")
        await self._live_room(b.room_a)
        await self._live_room(b.room_b)
        start = await redis_now_ms(self.rt)
        end = start + duration_s * 1000
        # Each side opens in its own slot; a side that refuses (still holding an unsettled
        # battle) undoes the other, and nothing scored in between (the window is this one's).
        opened = []
        for room, opp, creator in ((b.room_a, b.room_b, b.creator_a),
                                   (b.room_b, b.room_a, b.creator_b)):
            if not await self.sides.open(room, b.id, start, end, opp, creator):
                for done in opened:
                    await self.sides.close(done, b.id, now=True)
                raise BattleError("battle_busy", f"room {room} is still settling a battle")
            opened.append(room)
        row = await self.rt.pool.fetchrow(
            f"""UPDATE battles SET state = 'running', duration_s = $2, start_ms = $3,
                end_ms = $4, updated_at = now() WHERE id = $1 AND state = 'accepted'
                RETURNING {_COLUMNS}""", b.id, duration_s, start, end)
        if row is None:  # started or cancelled meanwhile by the other creator
            now = await self.get(b.id)
            if now.state != "running":  # cancelled: the sides just opened must not hold on
                for room in opened:
                    await self.sides.close(room, b.id, now=True)
            return now
        started = Battle.of(row)
        await self.publish(started, BattlePhase.START, started.sides())
        return started

    async def cancel_unstarted(self, who: Principal, battle_id: str) -> Battle | None:
        """Cancel an invited or accepted battle; None when it is running (settled then, by
        server/live/battle_settle.py `cancel`)."""
        b = await self.get(battle_id)
        self._creator_of(who, (b.creator_a, b.creator_b),
                         "only the battle's creators may cancel it")
        if b.state in ("invited", "accepted"):
            return await self.move(b, b.state, "cancelled")
        if b.state == "running":
            return None
        raise BattleError("battle_state", f"the battle is {b.state} already")

    async def move(self, b: Battle, before: str, after: str) -> Battle:
        row = await self.rt.pool.fetchrow(
            f"""UPDATE battles SET state = $3, result = CASE WHEN $3 = 'cancelled'
                THEN 'cancelled' END, updated_at = now() WHERE id = $1 AND state = $2
                RETURNING {_COLUMNS}""", b.id, before, after)
        if row is None:
            raise BattleError("battle_state", f"the battle is {b.state}, not {before}")
        return Battle.of(row)

    async def publish(self, b: Battle, phase: BattlePhase, sides: tuple[BattleSide, BattleSide]
                      ) -> None:
        """A start or end message on both rooms' channels (each addressed to its room)."""
        for room in (b.room_a, b.room_b):
            await publish(self.rt.redis, self.rt.keys.room_channel(room),
                          envelope(b.message(room, phase, sides)))
