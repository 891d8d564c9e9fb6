"""Combos (streaks): which rooms may hold running combos, swept on a timer.

A combo: each click is its own debited tx and its own `combo` progress event (count so far);
`combo_end`, or the server-side timeout after the last click, settles it into exactly one `gift`
event with the combo id and the total (HDEL in the room slot decides; see room_combo_settle.lua).
Timeouts are swept by every process that serves the room or took clicks for it. Sending a gift
or a combo click from a connection is server/edge/gifts.py.
"""

from __future__ import annotations

import asyncio
import time

from server.hub.roomstate import RoomState


class ComboSweeper:
    """Which rooms may hold running combos, as far as this process knows."""

    def __init__(self, state: RoomState) -> None:
        self.state = state
        self._noted: dict[str, float] = {}  # room -> when this process last took a click

    def note(self, room: str) -> None:
        self._noted[room] = time.monotonic()

    async def sweep(self, rooms_with_open_combos: set[str]) -> int:
        now = time.monotonic()
        horizon = self.state.combo_timeout_ms / 1000 * 3 + 5
        rooms = set(rooms_with_open_combos)
        for name, since in list(self._noted.items()):
            if now - since > horizon:
                del self._noted[name]
            else:
                rooms.add(name)
        # Concurrent calls: the script runner sends them as one pipeline.
        return sum(await asyncio.gather(*(self.state.settle_combos(name) for name in rooms)))
