"""The overlays' control envelope on a room's channel: a setting changed, or the key rotated.

Like moderation's (server/live/moderation.py), a msgpack map whose first key is "k", here with
value "ovl", so the edge (server/edge/overlays.py) tells it from a room event with one slice
comparison and the hub never sees it. Control messages are not in the room history: what a
process misses while its pub/sub reconnects is caught by the session watcher (a rotated key is
also marked revoked) and by the settings sent on every join.
"""

from __future__ import annotations

from typing import Literal

import msgpack

CONTROL_MARK = msgpack.packb("k") + msgpack.packb("ovl")
Action = Literal["settings", "key"]


def control_message(room: str, action: Action, value: str) -> bytes:
    """`settings`: value is the settings JSON; `key`: value is the new key's session id."""
    return msgpack.packb({"k": "ovl", "a": action, "r": room, "v": value})


def read_control(data: bytes) -> tuple[Action, str, str] | None:
    """(action, room, value) of an overlay control message; None for anything else."""
    if data[1:1 + len(CONTROL_MARK)] != CONTROL_MARK:
        return None
    env = msgpack.unpackb(data, raw=False)
    if type(env) is not dict:
        return None
    action, room, value = env.get("a"), env.get("r"), env.get("v")
    if action not in ("settings", "key") or not isinstance(room, str) or not isinstance(value,
                                                                                        str):
        return None
    return action, room, value
