"""What a room's channel carries, decoded into protocol messages for the hub.

Envelopes are msgpack maps published by the room scripts (server/hub/roomstate.py): `{"k": "ev",
"ev": {...}}` for a room event (optionally with the room's new `top`/`goal`), `{"k": "st", ...}`
for a state change alone (`top`, `goal`, `nogoal`, `live`). Room events come back from the
history in the same `ev` form. Leaderboard and goal are latest-wins room state, pushed to members
in coalesced rounds.

State rounds (`StatePushes`): the room's state (leaderboard, goal, viewer count) pushed to its
members, latest wins, and priced in. A busy room's state changes with nearly every gift, so
pushing it on a clock of its own costs a message per member per tick beside the events (at 50
gifts/s into 1,000 members a 0.2 s clock made about 9% of the messages sent, issue 13) and,
pushed between two event flushes, frames and socket writes of its own. Here a state round:
- rides with an event: it is pushed right after a room event is pushed to the members, so the
  same flush puts both in one frame per member (no write of its own);
- holds only what changed since the last round (a steady viewer count, an unchanged goal are not
  sent again);
- in a busy room comes once per `EVENTS_PER_ROUND` events at most (so about 3% of what members
  get), and never later than `state_max_interval_s` after the change (a timer takes a change
  no event carries: a quiet room, a goal set, a viewer count);
- is encoded once per room and codec, like the events (`Outgoing`).
A quiet room's state (the last round more than `state_max_interval_s` ago) rides with the very
gift that changed it. Status changes (`room`: live or ended) are not coalesced: they go at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from protocol import (
    SERVER_MESSAGES,
    ComboProgress,
    GiftEvent,
    Goal,
    GoalUpdate,
    Leaderboard,
    ProtocolError,
    RoomStatus,
    ServerMessage,
    TopEntry,
    ViewerCount,
)
from server.hub.rooms import HubSettings, Room, RoomEvent

log = logging.getLogger("giftwire.hub")


def event_message(ev: Any) -> RoomEvent | None:
    """A room event from its `ev` map; None (logged) when it is not a valid one."""
    try:
        if type(ev) is not dict:
            raise ValueError("not a map")
        cls = SERVER_MESSAGES.get(ev.get("type", ""))
        if cls is not GiftEvent and cls is not ComboProgress:
            raise ValueError(f"not a room event: {ev.get('type')!r}")
        msg = cls.from_dict(ev, strict=False)
        assert isinstance(msg, GiftEvent | ComboProgress)
        return msg
    except (ValueError, ProtocolError) as exc:
        log.error("invalid room event skipped: %s", exc)
        return None


def read_state(room: Room, env: dict[str, Any]) -> RoomStatus | None:
    """Take the envelope's state into `room`; the status change to send at once, if any.
    Raises KeyError, TypeError or ValueError on a malformed envelope (room unchanged then).
    Every spend's envelope carries the leaderboard: it is kept as it came and decoded only when a
    state round takes it (`current_top`), once per round instead of once per gift."""
    goal = room.goal
    raw = env.get("top")
    if raw is not None and type(raw) is not list:
        raise TypeError("top must be a list")
    if "goal" in env:
        g = env["goal"]
        goal = Goal(title=str(g["title"]), target=int(g["target"]), progress=int(g["progress"]))
    if env.get("nogoal"):
        goal = None
    status = RoomStatus(room=room.name, live=bool(env["live"])) if "live" in env else None
    if raw is not None:
        room.top_pending = raw
    room.goal = goal
    return status


def current_top(room: Room) -> tuple[TopEntry, ...] | None:
    """The room's leaderboard, the latest envelope's decoded now (a malformed one is logged and
    the last good leaderboard stands)."""
    raw, room.top_pending = room.top_pending, None
    if raw is not None:
        try:
            room.top = tuple(
                TopEntry(user=str(e["user"]), name=str(e["name"]), coins=int(e["coins"]))
                for e in raw
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.error("invalid leaderboard on %s skipped: %s", room.name, exc)
    return room.top


def changes_state(env: dict[str, Any]) -> bool:
    """Whether the envelope calls for a leaderboard/goal push."""
    return "top" in env or "goal" in env or "nogoal" in env


# At most one state round per this many room events (when the room is busier than one round per
# `state_interval_s`): with a leaderboard in every round, about 3% of the messages members get.
EVENTS_PER_ROUND = 32


class StatePushes:
    def __init__(self, settings: HubSettings, broadcast: Callable[[Room, ServerMessage], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._broadcast = broadcast
        self._clock = clock

    def on_envelope(self, room: Room, env: dict[str, Any]) -> None:
        """Take an envelope's state into the room; a status change goes out at once, the rest
        waits for a round."""
        try:
            status = read_state(room, env)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("invalid state update on %s skipped: %s", room.name, exc)
            return
        if status is not None:
            self._broadcast(room, status)
        if changes_state(env):
            self._changed(room)

    def on_viewers(self, room: Room, count: int) -> None:
        if count != room.viewers:
            room.viewers = count
            self._changed(room)

    def after_event(self, room: Room) -> None:
        """A room event was just pushed to the members: the state rides with it when due."""
        room.state_events += 1
        if not room.state_dirty:
            return
        elapsed = self._clock() - room.state_at
        s = self.settings
        if elapsed >= s.state_max_interval_s or (
                elapsed >= s.state_interval_s and room.state_events >= EVENTS_PER_ROUND):
            self.push(room)

    def push(self, room: Room, *, everything: bool = False) -> None:
        """A round now: what changed since the last one (`everything`: all of it, as after a
        history restart, when members must not keep what they were shown)."""
        if room.state_timer is not None:
            room.state_timer.cancel()
            room.state_timer = None
        room.state_dirty = False
        room.state_events = 0
        room.state_at = self._clock()
        for msg in self._changes(room, everything):
            self._broadcast(room, msg)

    def _changed(self, room: Room) -> None:
        room.state_dirty = True
        if room.state_timer is None:
            wait = self.settings.state_max_interval_s - (self._clock() - room.state_at)
            room.state_timer = asyncio.get_running_loop().call_later(
                max(wait, self.settings.state_interval_s), self._on_timer, room)

    def _on_timer(self, room: Room) -> None:
        room.state_timer = None
        if room.state_dirty:
            self.push(room)

    @staticmethod
    def _changes(room: Room, everything: bool) -> list[ServerMessage]:
        out: list[ServerMessage] = []
        top = current_top(room)
        if top is not None and (everything or top != room.sent_top):
            out.append(Leaderboard(room=room.name, top=top))
        g = room.goal
        if g is not None and (everything or g != room.sent_goal):
            out.append(GoalUpdate(room=room.name, title=g.title, target=g.target,
                                  progress=g.progress))
        if room.viewers >= 0 and room.viewers != room.sent_viewers:
            out.append(ViewerCount(room=room.name, count=room.viewers))
        room.sent_top, room.sent_goal, room.sent_viewers = top, room.goal, room.viewers
        return out
