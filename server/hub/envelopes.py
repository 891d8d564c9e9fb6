"""What a room's channel carries, decoded into protocol messages for the hub.

Envelopes are msgpack maps published by the room scripts (server/hub/roomstate.py): `{"k": "ev",
"ev": {...}}` for a room event (optionally with the room's new `top`/`goal`), `{"k": "st", ...}`
for a state change alone (`top`, `goal`, `nogoal`, `live`). Room events come back from the
history in the same `ev` form. Leaderboard and goal are latest-wins room state, pushed to members
in coalesced rounds (server/hub/statepush.py).
"""

from __future__ import annotations

import logging
from typing import Any

from protocol import (
    SERVER_MESSAGES,
    ComboProgress,
    GiftEvent,
    Goal,
    ProtocolError,
    RoomStatus,
    TopEntry,
)
from server.hub.rooms import Room, RoomEvent

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
    Raises KeyError, TypeError or ValueError on a malformed envelope (room unchanged then)."""
    top, goal = room.top, room.goal
    raw = env.get("top")
    # Nearly every spend's envelope repeats the leaderboard: decoded only when it differs.
    if raw is not None and raw != room.top_raw:
        top = tuple(
            TopEntry(user=str(e["user"]), name=str(e["name"]), coins=int(e["coins"]))
            for e in raw
        )
    if "goal" in env:
        g = env["goal"]
        goal = Goal(title=str(g["title"]), target=int(g["target"]), progress=int(g["progress"]))
    if env.get("nogoal"):
        goal = None
    status = RoomStatus(room=room.name, live=bool(env["live"])) if "live" in env else None
    if top is not room.top:
        room.top, room.top_raw = top, raw
    room.goal = goal
    return status


def changes_state(env: dict[str, Any]) -> bool:
    """Whether the envelope calls for a leaderboard/goal push."""
    return "top" in env or "goal" in env or "nogoal" in env
