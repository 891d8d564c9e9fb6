"""Overlay sessions at the socket edge: settings pushed to them, rotated keys ending them.

The overlays' control messages (server/live/overlay_control.py) arrive on the room's channel,
which this process is subscribed to exactly while it has members in the room: the hub decodes
them with the room's events and hands them to the desk (`Hub.on_control`). A `settings` message
goes to every overlay session of the room here; a `key` message ends every session of the room
opened with another key (`overlay_key_invalid`, 4005). A joining overlay is sent the room's
current settings after `joined`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from protocol import ErrorCode, Role, ServerMessage
from server.hub.hub import Hub
from server.live.overlay_control import CONTROL_KIND, read_control
from server.live.overlay_keys import is_key_session
from server.live.overlay_settings import OverlaySettingsStore, from_control

log = logging.getLogger("giftwire.overlays")


class OverlayDesk:
    def __init__(self, settings: OverlaySettingsStore, sessions: Iterable[Any]) -> None:
        self.settings = settings
        self._sessions = sessions  # the process's open sessions (Realtime.connections)

    def install(self, hub: Hub) -> None:
        hub.on_control(CONTROL_KIND, self._on_control)

    def _on_control(self, env: dict[str, Any]) -> None:
        control = read_control(env)
        if control is None:
            log.error("invalid overlay control message skipped")
            return
        action, room, value = control
        if action == "settings":
            self._push(room, from_control(room, value))
        else:
            self._end_other_keys(room, value)

    def _overlays(self, room: str) -> list[Any]:
        return [s for s in list(self._sessions)
                if s.principal is not None and s.principal.role is Role.OVERLAY
                and room in s.rooms and s.close_code is None]

    def _push(self, room: str, msg: ServerMessage) -> None:
        for session in self._overlays(room):
            session.reply(msg)

    def _end_other_keys(self, room: str, current: str) -> None:
        for session in self._overlays(room):
            if is_key_session(session.principal) and session.principal.token_id != current:
                session.token_ended(ErrorCode.OVERLAY_KEY_INVALID,
                                    "the overlay key was rotated: use the new overlay URL")

    async def joined(self, session: Any, room: str) -> None:
        """After an overlay's `joined`: the room's settings (a failure only logs: the overlay
        keeps its defaults and gets the next change)."""
        try:
            session.reply(await self.settings.get(room))
        except Exception as exc:
            log.warning("overlay settings of %s not sent: %s", room, exc)
