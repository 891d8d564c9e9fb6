"""Room blocks at the socket edge: a blocked user's `join` is refused, and the moment a block lands
their sessions in the room, on every process, are told `blocked` and leave it.

The block's control message (server/live/moderation.py) arrives on the room's channel, which this
process is subscribed to exactly while it has members in the room: the hub decodes it with the
room's events and hands it to the guard (`Hub.on_control`). Gifts need nothing here: spend.lua
refuses them.
Control messages are not in the room history: after the broker re-subscribes (messages published
meanwhile are lost to pub/sub) every local session's rooms are checked against the blocks again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from protocol import ErrorCode, Role
from server.auth import Principal
from server.hub.hub import Hub, HubError
from server.hub.rooms import Member as HubMember
from server.live.moderation import CONTROL_KIND, Moderation, read_control

log = logging.getLogger("giftwire.moderation")


class Member(HubMember, Protocol):
    """What the guard needs of a session (server/edge/connection.py)."""

    principal: Principal | None
    rooms: set[str]
    close_code: int | None

    def error(self, code: ErrorCode | str, message: str, request_id: str | None, *,
              tx: str | None = None, room: str | None = None, retry_ms: int | None = None
              ) -> None: ...


class RoomGuard:
    def __init__(self, hub: Hub, moderation: Moderation, sessions: Iterable[Any]) -> None:
        self.hub = hub
        self.moderation = moderation
        self._sessions = sessions  # the process's open sessions (Realtime.connections)
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        """Block control messages from the hub; a re-check of every local session after a
        re-subscription (control messages published meanwhile were lost to pub/sub)."""
        self.hub.on_control(CONTROL_KIND, self._on_control)
        self.hub.on_resubscribed(lambda: self._spawn(self.recheck()))

    def _on_control(self, env: dict[str, Any]) -> None:
        control = read_control(env)
        if control is None:
            log.error("invalid block control message skipped")
        else:
            self.evict_everywhere_here(*control)

    async def recheck(self) -> None:
        """Take every local session out of the rooms it is blocked in (one Redis round trip)."""
        pairs = sorted({(room, user) for member in list(self._sessions)
                        if (user := _blockable(member)) is not None for room in member.rooms})
        try:
            blocked = await self.moderation.gate.blocked_among(pairs)
        except Exception as exc:  # Redis failing again: the next re-subscription checks again
            log.warning("re-checking blocks after a re-subscription failed: %s", exc)
            return
        for room, user in blocked:
            self.evict_everywhere_here(room, user)

    async def join(self, member: Any, room: str, after: int | None, request_id: str | None,
                   epoch: str | None = None) -> None:
        """`Hub.join`, refused with `blocked` (HubError) for a user blocked in the room."""
        user = _blockable(member)
        if user is not None and await self.moderation.blocked(room, user):
            raise HubError(ErrorCode.BLOCKED.value, "you are blocked in this room")
        await self.hub.join(member, room, after, request_id, epoch)
        # Checked again once joined: a block that landed during the join published its control
        # message before this process had the member in the room, but wrote the gate before that.
        if user is not None and await self.moderation.blocked(room, user):
            self._evict(member, room)

    def evict_everywhere_here(self, room: str, user: str) -> None:
        for member in list(self._sessions):
            principal = member.principal
            if (principal is not None and principal.user == user and room in member.rooms
                    and member.close_code is None):
                self._evict(member, room)

    def _evict(self, member: Member, room: str) -> None:
        self._spawn(self._leave(member, room))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _leave(self, member: Member, room: str) -> None:
        if room not in member.rooms:
            return  # left meanwhile
        member.rooms.discard(room)
        try:
            await self.hub.leave(member, room)
        except Exception as exc:  # presence removal failed: it expires by itself
            log.warning("leaving %s after a block: %s", room, exc)
        # After the hub let go: no event of the room reaches the session after this notice.
        member.error(ErrorCode.BLOCKED, "you were blocked in this room", None, room=room)


def _blockable(member: Any) -> str | None:
    principal: Principal | None = member.principal
    if principal is None or principal.role is Role.OVERLAY:
        return None  # an overlay reads its own room for its creator, who cannot be blocked
    return principal.user
