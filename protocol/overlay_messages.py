"""Server -> overlay messages: the creator's overlay settings of a room.

Sent to overlay sessions only (an overlay token or an overlay key): once after `joined`, and again
whenever the creator changes a setting, on every server process. Viewers never receive it.
"""

from dataclasses import dataclass
from typing import ClassVar, Self

from protocol.fields import FieldReader
from protocol.limits import MAX_ROOM_ID_LEN, MAX_SAFE_INT
from protocol.message import ServerMessage, server_message

# The range of `alert_ms`, also what the HTTP API accepts (server/live/overlay_settings.py).
MIN_ALERT_MS = 1000
MAX_ALERT_MS = 60_000
MAX_VOLUME = 100


@server_message
@dataclass(frozen=True, slots=True, kw_only=True)
class OverlaySettings(ServerMessage):
    """How the room's overlays show gifts: the creator's choices, saved server-side."""

    TYPE: ClassVar[str] = "overlay_settings"
    room: str
    min_coins: int  # a gift worth less gets no full alert (the ticker still lists it)
    alert_ms: int  # how long a full alert stays on screen
    alerts: bool
    combos: bool
    top: bool
    goal: bool
    ticker: bool  # the recent-gifts ticker
    sound: bool
    volume: int  # 0..100

    @classmethod
    def _parse(cls, r: FieldReader) -> Self:
        return cls(
            room=r.ident("room", MAX_ROOM_ID_LEN),
            min_coins=r.integer("min_coins", 0, MAX_SAFE_INT),
            alert_ms=r.integer("alert_ms", MIN_ALERT_MS, MAX_ALERT_MS),
            alerts=r.boolean("alerts"),
            combos=r.boolean("combos"),
            top=r.boolean("top"),
            goal=r.boolean("goal"),
            ticker=r.boolean("ticker"),
            sound=r.boolean("sound"),
            volume=r.integer("volume", 0, MAX_VOLUME),
        )
