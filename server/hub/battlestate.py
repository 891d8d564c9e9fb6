"""Gift battles in the hub: each room's side in its Redis slot, and what members are shown.

A battle's score is split by room: each room's slot holds that room's side (battle id, window,
score, per-gifter scores; keys `room_battle`, `room_battle_top`), and `room_event.lua` scores a
gift into it atomically with the room event. So each side is exact in its own slot, and no step
ever needs both slots at once: the result is read from both sides after each was closed
(`room_battle_close.lua`: once closed, nothing scores there again). docs/battles.md has the
argument.

What a room's channel carries about a battle (envelope `k` = "bt", or `bt` beside a room event):
- `{k: "bt", m: <battle message map>}`: start or end, published by the battles feature on both
  rooms' channels (server/live/battles.py);
- `{k: "bt", s: {b, r, v}}` or `{k: "ev", ..., bt: {b, r, v}}`: side `r` of battle `b` now has
  score `v`: `room_event.lua` publishes it with the event on its own room's channel, and its
  caller (RoomState.publish_gift) on the opponent's, which is in another slot.
Scores only grow during a battle, so a view keeps the highest it has seen of each side: an update
that arrives late never moves the bar back. Score updates are pushed at most every state
interval per room (latest wins), start and end at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from protocol import BattlePhase, BattleResult, BattleSide, BattleUpdate, ProtocolError, TopEntry
from server.hub.rooms import Codecs, Member, Outgoing, Room
from server.hub.roomstate import RoomState

log = logging.getLogger("giftwire.battles")

# An unsettled side is kept this long past its window's end, so a battle whose processes all died
# is still settled, exactly, on the next touch a day later; a settled side is kept for the
# overlay's "result" display after a reload.
UNSETTLED_KEEP_MS = 24 * 3600 * 1000
SETTLED_KEEP_MS = 600 * 1000
# A side is settled no earlier than this after its window's end: a gift debited just before the
# end has its room event (which scores it, by its debit time) a round trip later.
SETTLE_GRACE_MS = 1000

Broadcast = Callable[[BattleUpdate], None]


@dataclass(frozen=True, slots=True)
class Side:
    """One room's side as its slot holds it."""

    battle: str  # '' when the room has no battle side
    room: str
    creator: str
    start: int
    end: int
    opp: str
    score: int
    closed: bool
    cancelled: bool  # closed by a cancel: its end is shown as `cancelled`, not a win or draw
    top: TopEntry | None
    now: int  # Redis time of the read, ms


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _top(user: Any, name: Any, coins: Any) -> TopEntry | None:
    return TopEntry(user=_s(user), name=_s(name), coins=int(coins)) if _s(user) else None


def envelope(msg: BattleUpdate) -> bytes:
    """The start/end envelope for a room's channel."""
    return msgpack.packb({"k": "bt", "m": msg.to_dict()})


def result_of(a: BattleSide, b: BattleSide) -> tuple[str, str | None]:
    if a.score == b.score:
        return BattleResult.DRAW.value, None
    return BattleResult.WIN.value, (a.room if a.score > b.score else b.room)


class BattleSides:
    """The battle scripts of one room's slot."""

    def __init__(self, state: RoomState) -> None:
        self.state = state

    def _keys(self, room: str) -> list[str]:
        k = self.state.keys
        return [k.room_battle(room), k.room_battle_top(room), k.room_names(room)]

    async def open(self, room: str, battle: str, start: int, end: int, opp: str,
                   creator: str) -> bool:
        """Open the room's side; False when the room's side is another unsettled battle's."""
        k = self.state.keys
        opened = await self.state.runner.call(
            "room_battle_open", [k.room_battle(room), k.room_battle_top(room)],
            [battle, start, end, opp, k.room_channel(opp), UNSETTLED_KEEP_MS, creator,
             end + SETTLE_GRACE_MS])
        return bool(int(opened))

    async def close(self, room: str, battle: str, *, now: bool) -> tuple[str, int, TopEntry | None]:
        """Close the room's side (at once, or only once its window ended): (state, score, top);
        state 'closed' (final), 'open' (not over yet) or 'none' (not this battle's side)."""
        state, score, user, name, coins = await self.state.runner.call(
            "room_battle_close", self._keys(room), [battle, 1 if now else 0, SETTLED_KEEP_MS])
        return ("none", "open", "closed")[int(state)], int(score), _top(user, name, coins)

    async def read(self, room: str) -> Side:
        b, start, end, opp, score, closed, user, name, coins, now, creator = (
            await self.state.runner.call("room_battle_side", self._keys(room), []))
        return Side(_s(b), room, _s(creator), int(start), int(end), _s(opp), int(score),
                    int(closed) > 0, int(closed) == 2, _top(user, name, coins), int(now))

    async def snapshot(self, room: str) -> BattleUpdate | None:
        """The battle `room` is in, as far as both slots say now (two reads: display only). A
        window that is over but unsettled is reported to `state.on_battle_due` (a touch)."""
        mine = await self.read(room)
        if not mine.battle:
            return None
        theirs = await self.read(mine.opp)
        if theirs.battle != mine.battle:
            theirs = replace(theirs, battle=mine.battle, score=0, top=None, closed=mine.closed,
                             cancelled=mine.cancelled)
        sides = (BattleSide(room=room, creator=mine.creator, score=mine.score, top=mine.top),
                 BattleSide(room=mine.opp, creator=theirs.creator, score=theirs.score,
                            top=theirs.top))
        if mine.closed and theirs.closed:
            # As the end was announced (battle_settle.py): a cancel closed the sides at once.
            cancelled = mine.cancelled or theirs.cancelled
            result, winner = ((BattleResult.CANCELLED.value, None) if cancelled
                              else result_of(*sides))
            phase = BattlePhase.END.value
        else:
            result = winner = None
            phase = BattlePhase.SCORE.value
            if mine.now >= mine.end + SETTLE_GRACE_MS and self.state.on_battle_due is not None:
                self.state.on_battle_due(room, mine.battle)
        return BattleUpdate(room=room, battle=mine.battle, phase=phase, starts_at=mine.start,
                            ends_at=mine.end, sides=sides, result=result, winner=winner)


def merge_score(view: BattleUpdate | None, battle: str, side: str, score: int
                ) -> BattleUpdate | None:
    """`view` with side `side`'s score raised to `score`; None when nothing changes."""
    if view is None or view.battle != battle or view.phase == BattlePhase.END:
        return None
    sides = tuple(replace(s, score=max(s.score, score)) if s.room == side else s
                  for s in view.sides)
    if sides == view.sides:
        return None
    return replace(view, phase=BattlePhase.SCORE.value, sides=sides)


def merge_view(view: BattleUpdate | None, new: BattleUpdate) -> BattleUpdate:
    """A start/end message or a snapshot taken into a view: an ended battle stays ended."""
    if view is None or view.battle != new.battle or new.phase == BattlePhase.END:
        return new
    if view.phase == BattlePhase.END:
        return view
    sides = tuple(replace(s, score=max(s.score, o.score if (o := view.side(s.room)) else 0))
                  for s in new.sides)
    return replace(new, sides=sides)


class BattleView:
    """The battle a room's local members see, fed from the room's channel."""

    __slots__ = ("_broadcast", "_interval_s", "_timer", "current")

    def __init__(self, broadcast: Broadcast, interval_s: float) -> None:
        self._broadcast = broadcast
        self._interval_s = interval_s
        self._timer: asyncio.TimerHandle | None = None
        self.current: BattleUpdate | None = None

    def on_envelope(self, room: str, env: dict[str, Any]) -> None:
        """A `bt` envelope (or the `bt` of a room event) from the room's channel."""
        try:
            if "m" in env:
                msg = BattleUpdate.from_dict(env["m"], strict=False)
                if msg.room != room:
                    raise ValueError(f"a battle message for {msg.room} on {room}'s channel")
                self.take(msg)
                return
            s = env["s"] if "s" in env else env["bt"]
            changed = merge_score(self.current, str(s["b"]), str(s["r"]), int(s["v"]))
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            log.error("invalid battle envelope on %s skipped: %s", room, exc)
            return
        if changed is not None:
            self.current = changed
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._push)

    def take(self, msg: BattleUpdate) -> None:
        """A start/end message: pushed at once."""
        merged = merge_view(self.current, msg)
        self.current = merged
        self.cancel()
        self._broadcast(merged)

    def adopt(self, snap: BattleUpdate) -> BattleUpdate:
        """A snapshot read for a joining member: taken in without a push to the others."""
        self.current = merge_view(self.current, snap)
        return self.current

    def _push(self) -> None:
        self._timer = None
        if self.current is not None:
            self._broadcast(self.current)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def show_battle(sides: BattleSides, codecs: Codecs, room: Room, member: Member) -> None:
    """The room's battle, if any, to a member that just joined (read from Redis after the member
    is live, so no later update is missed; a failed read leaves the bar to the next update)."""
    try:
        snap = await sides.snapshot(room.name)
    except Exception as exc:
        log.warning("reading %s's battle failed (%s)", room.name, exc)
        return
    if snap is not None and room.members.get(member) is not None:
        data, size = Outgoing(codecs, room.battle.adopt(snap)).encoded(member.binary)
        member.writer.push(data, size)
