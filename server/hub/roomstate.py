"""Room state in Redis, one slot per room: events, the join snapshot, presence, leaderboard, goal.

Thin, typed wrappers around the `room_*.lua` scripts (see each script's header). Everything a
room script touches shares the `{r:<room>}` hash tag, so each call is one atomic step in one slot.

Pub/sub envelope (what `room_event`, `room_combo_settle`, `room_goal` and `room_status` publish on
the room channel), a msgpack map:
- `{k: "ev", ev: <event map>, top?: [...], goal?: {...}}`: a sequenced room event (`gift` or
  `combo`, the wire message's own map) and, after a spend, the new leaderboard and goal;
- `{k: "st", goal?: {...}, nogoal?: true, live?: bool}`: a state change without a sequence number.
- `{k: "bt", ...}` (and `bt` beside a spend's `ev`): a battle's start, end or a side's new score
  (server/hub/battlestate.py).
The history stream holds the event maps alone (fields `s` = seq, `e` = msgpack event), of the
room's current epoch only (server/storage/lua/lib/room_epoch.lua says when an epoch starts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.asyncio import Redis

from protocol import Goal, TopEntry
from server.storage.keys import Keys
from server.storage.pubsub import publish
from server.storage.scripts import ScriptKeys, ScriptRunner

TOP_SIZE = 10
# How long (and how many) transactions a room remembers as published. A client retries a tx
# whose ack it missed within seconds; a retry after the window (an hour, or the room's last
# 200,000 gifts) would be acknowledged as a duplicate by the wallet and shown once more.
DEDUP_WINDOW_MS = 3600 * 1000
DEDUP_MAX = 200_000
MAX_SETTLE_PER_CALL = 100
# Settled combo ids are remembered this long, so a late click is refused instead of reopening it.
COMBO_MEMORY_MS = 3600 * 1000
# Rooms whose `room_event` keys are kept packed (ScriptKeys); past it the cache starts afresh.
PACKED_ROOMS = 10_000


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    epoch: str  # '' for a room that does not exist
    exists: bool
    creator: str
    live: bool
    title: str
    top: tuple[TopEntry, ...]
    goal: Goal | None
    viewers: int
    resume: str  # "none" | "ok" | "gap"
    events: list[dict[str, Any]]  # replayed events (decoded maps), oldest first


@dataclass(frozen=True, slots=True)
class Since:
    """What a recovering process missed: the room's position and the events after the one asked
    for; when `epoch` is not the one asked for, the events follow `start` (the epoch's first)."""

    epoch: str
    start: int
    seq: int
    complete: bool  # the history reached back to the first event asked for
    events: list[bytes]  # encoded, oldest first


def decode_event(raw: bytes) -> dict[str, Any]:
    value = msgpack.unpackb(raw, raw=False)
    if type(value) is not dict:
        raise ValueError("an event must be a map")
    return value


# The room goal hash's fields (written by room_goal.lua, advanced by room_event.lua), in the
# order room_join.lua returns them; a goal without a target is no goal.
_GOAL_FIELDS = ("title", "target", "progress")


def _goal(raw: list[Any]) -> Goal | None:
    if not raw or raw[1] is None:
        return None
    return Goal(title=_s(raw[0] or b""), target=int(raw[1]), progress=int(raw[2] or 0))


class RoomState:
    def __init__(
        self,
        keys: Keys,
        runner: ScriptRunner,
        redis: Redis,
        *,
        history_maxlen: int,
        history_max_age_s: int,
        combo_timeout_ms: int,
        presence_ttl_s: int,
    ) -> None:
        self.keys = keys
        self.runner = runner
        self.redis = redis
        self.history_maxlen = history_maxlen
        self.history_max_age_ms = history_max_age_s * 1000
        self.combo_timeout_ms = combo_timeout_ms
        self.presence_ttl_ms = presence_ttl_s * 1000
        # Called with (room, battle id) when a gift finds the room's battle window closed but its
        # side not settled: the battles feature (server/live/battles.py) settles it.
        self.on_battle_due: Callable[[str, str], None] | None = None
        self._event_keys: dict[str, ScriptKeys] = {}

    def _room_event_keys(self, room: str) -> ScriptKeys:
        """The 13 keys of a room's gifts, named and packed once per room, not per gift."""
        keys = self._event_keys.get(room)
        if keys is None:
            if len(self._event_keys) >= PACKED_ROOMS:
                self._event_keys.clear()
            k = self.keys
            keys = self._event_keys[room] = ScriptKeys((
                k.room_seq(room), k.room_history(room), k.room_published(room),
                k.room_leaderboard(room), k.room_names(room), k.room_goal(room),
                k.room_combos(room), k.room_combo_due(room), k.room_channel(room),
                k.room_combos_done(room), k.room_epoch(room), k.room_battle(room),
                k.room_battle_top(room),
            ))
        return keys

    # -- events ---------------------------------------------------------------------------------

    async def publish_gift(
        self,
        room: str,
        *,
        sender: str,
        name: str,
        tx: str,
        gift: str,
        count: int,
        coins: int,
        combo: str | None = None,
        at_ms: int = 0,
    ) -> int | None:
        """Publish the event of one accepted spend; None if this tx was already published.
        `at_ms`: when it was debited (its ledger time), which decides whether it scores in a
        battle (0: unknown, the event's own time decides)."""
        status, seq, _epoch, due, score, opp_channel = await self.runner.call(
            "room_event",
            self._room_event_keys(room),
            [
                f"{sender}:{tx}", room, sender, name, gift, count, coins, combo or "",
                self.history_maxlen, self.history_max_age_ms, DEDUP_WINDOW_MS,
                self.combo_timeout_ms, TOP_SIZE, DEDUP_MAX, at_ms,
            ],
        )
        if score:
            # The opponent's channel is in the opponent room's slot, outside the script's: its
            # copy of this side's score is published here (SPUBLISH routed by that slot on a
            # cluster). Views keep the highest score seen, so crossing publishes are harmless.
            await publish(self.redis, _s(opp_channel), score)
        if due and self.on_battle_due is not None:
            self.on_battle_due(room, _s(due))
        return int(seq) if int(status) == 1 else None

    async def settle_combos(self, room: str, *, sender: str = "", combo: str = "") -> int:
        """Settle one combo (sender and combo given) or every combo past its deadline."""
        k = self.keys
        key = f"{sender}\0{combo}" if combo else ""
        settled = await self.runner.call(
            "room_combo_settle",
            [
                k.room_seq(room), k.room_history(room), k.room_combos(room),
                k.room_combo_due(room), k.room_channel(room), k.room_combos_done(room),
                k.room_epoch(room),
            ],
            [room, key, self.history_maxlen, self.history_max_age_ms, MAX_SETTLE_PER_CALL,
             COMBO_MEMORY_MS],
        )
        return int(settled)

    async def since(self, room: str, epoch: str, after: int, limit: int) -> Since:
        """The events after (epoch, after), or the current epoch's when the epoch changed."""
        k = self.keys
        seq, complete, events, cur, start = await self.runner.call(
            "room_since", [k.room_seq(room), k.room_history(room), k.room_epoch(room)],
            [after, limit, epoch],
        )
        return Since(_s(cur), int(start), int(seq), bool(complete), list(events))

    # -- snapshot and presence ------------------------------------------------------------------

    async def join(
        self, room: str, *, member: str | None, after: int | None, epoch: str | None = None
    ) -> Snapshot:
        k = self.keys
        seq, meta, top, goal, viewers, resume, events, cur = await self.runner.call(
            "room_join",
            [
                k.room_seq(room), k.room_history(room), k.room(room), k.room_leaderboard(room),
                k.room_names(room), k.room_goal(room), k.room_presence(room), k.room_epoch(room),
            ],
            [member or "", self.presence_ttl_ms, -1 if after is None else after,
             self.history_maxlen, TOP_SIZE, epoch or ""],
        )
        fields = {_s(meta[i]): _s(meta[i + 1]) for i in range(0, len(meta), 2)}
        return Snapshot(
            seq=int(seq),
            epoch=_s(cur),
            exists="creator" in fields,
            creator=fields.get("creator", ""),
            live=fields.get("live") == "1",
            title=fields.get("title", ""),
            top=tuple(
                TopEntry(user=_s(top[i]), name=_s(top[i + 1]), coins=int(float(top[i + 2])))
                for i in range(0, len(top), 3)
            ),
            goal=_goal(goal),
            viewers=int(viewers),
            resume=_s(resume),
            events=[decode_event(raw) for raw in events],
        )

    async def refresh_presence(self, room: str, members: list[str]) -> int:
        """Extend these members' presence; returns the room's viewers across all processes."""
        return int(
            await self.runner.call(
                "room_presence", [self.keys.room_presence(room)], [self.presence_ttl_ms, *members]
            )
        )

    async def remove_presence(self, room: str, member: str) -> None:
        # Through the runner (batched), not a pooled connection: a thousand leaves at once must
        # not exhaust the client's connection pool.
        await self.runner.call("room_presence", [self.keys.room_presence(room)], [0, member])

    # -- goal and lifecycle ---------------------------------------------------------------------

    async def set_goal(self, room: str, title: str, target: int) -> None:
        """Set the room's goal (progress restarts at 0); target 0 clears it."""
        await self.runner.call(
            "room_goal", [self.keys.room_goal(room), self.keys.room_channel(room)], [title, target]
        )

    async def goal(self, room: str) -> Goal | None:
        """The room's goal, read the way `room_join` reads it (None when there is none)."""
        return _goal(await self.redis.hmget(self.keys.room_goal(room), _GOAL_FIELDS))

    async def announce_status(self, room: str, live: bool) -> None:
        flag = "1" if live else "0"
        await self.runner.call("room_status", [self.keys.room_channel(room)], [flag])
