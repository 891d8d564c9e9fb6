"""The overlays' control envelope on a room's channel: a setting changed, or the key rotated.

Like moderation's (server/live/moderation.py), a msgpack map whose "k" is not a room event's,
here "ovl": the hub decodes it with the room's events and hands it to the edge
(server/edge/overlays.py). Control messages are not in the room history: what a
process misses while its pub/sub reconnects is caught by the session watcher (a rotated key is
also marked revoked) and by the settings sent on every join.
"""

from __future__ import annotations

from typing import Any, Literal

import msgpack

CONTROL_KIND = "ovl"
Action = Literal["settings", "key"]


def control_message(room: str, action: Action, value: str) -> bytes:
    """`settings`: value is the settings JSON; `key`: value is the new key's session id."""
    return msgpack.packb({"k": CONTROL_KIND, "a": action, "r": room, "v": value})


def read_control(env: dict[str, Any]) -> tuple[Action, str, str] | None:
    """(action, room, value) of a decoded overlay control envelope; None if not a valid one."""
    action, room, value = env.get("a"), env.get("r"), env.get("v")
    if action not in ("settings", "key") or not isinstance(room, str) \
            or not isinstance(value, str):
        return None
    return action, room, value
