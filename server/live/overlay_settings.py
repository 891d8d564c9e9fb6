"""Overlay settings: how a room's overlays show gifts, chosen by its creator, saved server-side.

The settings are the `overlay_settings` message's fields (protocol/overlay_messages.py) but
`room`. Postgres (`overlay_settings`) is the system of record; the room's overlay hash in Redis
caches them as JSON (`settings`). A change is saved, cached, then published as a control message
on the room's channel, so every process pushes it to its open overlays of the room at once
(server/edge/overlays.py); every overlay is also sent the current settings when it joins.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from protocol import OverlaySettings
from protocol.fields import FieldReader
from protocol.limits import MAX_SAFE_INT
from protocol.overlay_messages import MAX_ALERT_MS, MAX_VOLUME, MIN_ALERT_MS
from server.live.overlay_control import control_message
from server.runtime import Runtime
from server.storage.pubsub import publish

DEFAULTS: dict[str, Any] = {
    "min_coins": 0, "alert_ms": 5000, "alerts": True, "combos": True, "top": True,
    "goal": True, "ticker": True, "sound": False, "volume": 60,
}
FIELDS = frozenset(DEFAULTS)
_BOOLEANS = ("alerts", "combos", "top", "goal", "ticker", "sound")
_RANGES = {"min_coins": (0, MAX_SAFE_INT), "alert_ms": (MIN_ALERT_MS, MAX_ALERT_MS),
           "volume": (0, MAX_VOLUME)}


def read_changes(r: FieldReader) -> dict[str, Any]:
    """The fields a request changes, each checked (ProtocolError: wrong_type, out_of_range)."""
    changes: dict[str, Any] = {}
    for name in FIELDS:
        if name in _BOOLEANS:
            if (flag := r.opt_bool(name)) is not None:
                changes[name] = flag
        elif (value := r.opt_int(name, *_RANGES[name])) is not None:
            changes[name] = value
    return changes


def message(room: str, values: dict[str, Any]) -> OverlaySettings:
    return OverlaySettings(room=room, **{**DEFAULTS, **values})


def to_json(settings: OverlaySettings) -> dict[str, Any]:
    return dataclasses.asdict(settings)


class OverlaySettingsStore:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def get(self, room: str) -> OverlaySettings:
        """The room's settings (the defaults for a room that never changed them)."""
        cache = self.rt.keys.room_overlay(room)
        raw = await self.rt.redis.hget(cache, "settings")
        if raw is None:
            stored = await self.rt.pool.fetchval(
                "SELECT settings::text FROM overlay_settings WHERE room = $1", room)
            raw = (stored or "{}").encode()
            # NX: a change saved meanwhile wrote its own (newer) copy, which must stay.
            await self.rt.redis.hsetnx(cache, "settings", raw)
        return _decode(room, raw)

    async def update(self, room: str, actor: str, changes: dict[str, Any]) -> OverlaySettings:
        """Apply checked changes (`read_changes`), save, and tell every open overlay."""
        cache = self.rt.keys.room_overlay(room)
        # Read-modify-write under the row lock: two editors at once both land, field by field.
        async with self.rt.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO overlay_settings (room, settings, updated_by) VALUES ($1, '{}', $2) "
                "ON CONFLICT (room) DO NOTHING", room, actor)
            stored = await conn.fetchval(
                "SELECT settings::text FROM overlay_settings WHERE room = $1 FOR UPDATE", room)
            values = {k: v for k, v in json.loads(stored).items() if k in FIELDS}
            values.update(changes)
            text = json.dumps(values, sort_keys=True)
            await conn.execute(
                "UPDATE overlay_settings SET settings = $2::jsonb, updated_by = $3, "
                "updated_at = now() WHERE room = $1", room, text, actor)
        await self.rt.redis.hset(cache, "settings", text)
        await publish(self.rt.redis, self.rt.keys.room_channel(room),
                                    control_message(room, "settings", text))
        return message(room, values)


def _decode(room: str, raw: bytes | str) -> OverlaySettings:
    values = json.loads(raw)
    return message(room, {k: v for k, v in values.items() if k in FIELDS})


def from_control(room: str, text: str) -> OverlaySettings:
    """The message a `settings` control message carries."""
    return _decode(room, text)
