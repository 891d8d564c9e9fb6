"""Moderation of a room: its creator appoints moderators; both block and unblock viewers there.

Postgres is the system of record (`room_moderators`, `room_blocks`, `moderation_audit`, migration
0004): every change and its audit row commit in one transaction. Then the spend gate learns the
block (server/money/blockgate.py: checked inside spend.lua, so no gift is debited after it), and
a control message on the room's channel tells every server process, whose edge takes the user's
local sessions out of the room (server/edge/moderated.py). The order matters: a session that
joins while the block lands checks the gate again after joining, and the gate is written before
the message is published, so one of the two always catches it.

A block or unblock retried after a failure part-way completes the remaining steps (they are
idempotent) and records nothing twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from protocol import Role
from server.auth import Principal
from server.hub.rooms import HubError
from server.money import streams
from server.money.blockgate import BlockGate
from server.runtime import Runtime
from server.storage.pubsub import publish

Standing = Literal["creator", "moderator"]
Action = Literal["block", "unblock", "moderator_add", "moderator_remove"]

# The kind of the control envelope on a room's channel (room events are "ev"/"st"/"bt"): the hub
# hands it to the guard (server/edge/moderated.py) instead of treating it as an event.
CONTROL_KIND = "mod"


class ModerationError(HubError):
    """Refused, with the protocol's stable code (forbidden, room_not_found, not_found,
    invalid_value); a HubError's code and message."""


@dataclass(frozen=True, slots=True)
class Block:
    user: str
    reason: str
    by: str
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "reason": self.reason, "by": self.by,
                "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    actor: str
    target: str
    action: str
    reason: str
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "actor": self.actor, "target": self.target,
                "action": self.action, "reason": self.reason, "at": self.at.isoformat()}


def control_message(room: str, user: str) -> bytes:
    """The envelope that takes a newly blocked user's sessions out of the room."""
    return msgpack.packb({"k": CONTROL_KIND, "a": "block", "r": room, "u": user})


def read_control(env: dict[str, Any]) -> tuple[str, str] | None:
    """(room, user) of a decoded block control envelope; None if it is not a valid one."""
    if env.get("a") != "block":
        return None
    room, user = env.get("r"), env.get("u")
    return (room, user) if isinstance(room, str) and isinstance(user, str) else None


class Moderation:
    def __init__(self, rt: Runtime, gate: BlockGate) -> None:
        self.rt = rt
        self.gate = gate

    # -- who may do what ----------------------------------------------------------------------
    async def standing(self, room: str, who: Principal) -> tuple[Standing | None, str]:
        """(the caller's standing in the room, the room's creator). Raises room_not_found."""
        info = await streams.room_info(self.rt, room)
        if info is None:
            raise ModerationError("room_not_found", "no such room")
        if who.user == info.creator and who.role is Role.CREATOR:
            return "creator", info.creator
        if who.role is Role.OVERLAY:  # an overlay token reads one room, it moderates nothing
            return None, info.creator
        found = await self.rt.pool.fetchval(
            "SELECT 1 FROM room_moderators WHERE room = $1 AND user_id = $2", room, who.user)
        return ("moderator" if found else None), info.creator

    async def require(self, room: str, who: Principal, *, creator_only: bool = False
                      ) -> tuple[Standing, str]:
        standing, creator = await self.standing(room, who)
        if standing is None or (creator_only and standing != "creator"):
            needed = "the room's creator" if creator_only else "the room's creator or a moderator"
            raise ModerationError("forbidden", f"only {needed} may do this")
        return standing, creator

    # -- blocks -------------------------------------------------------------------------------
    async def block(self, room: str, actor: Principal, user: str, reason: str) -> bool:
        """Block `user` in `room`; False when already blocked (the rest is completed anyway)."""
        standing, creator = await self.require(room, actor)
        if user == creator:
            raise ModerationError("forbidden", "the room's creator cannot be blocked")
        async with self.rt.pool.acquire() as conn, conn.transaction():
            if standing == "moderator" and await conn.fetchval(
                    "SELECT 1 FROM room_moderators WHERE room = $1 AND user_id = $2", room, user):
                raise ModerationError("forbidden", "only the room's creator may block a moderator")
            created = await conn.fetchval(
                """INSERT INTO room_blocks (room, user_id, reason, blocked_by)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1""",
                room, user, reason, actor.user)
            if created:
                await _audit(conn, room, actor.user, user, "block", reason)
        await self.gate.add(room, user)
        # Every process with the user's sessions in the room takes them out (edge/moderated.py).
        await publish(self.rt.redis, self.rt.keys.room_channel(room), control_message(room, user))
        return bool(created)

    async def unblock(self, room: str, actor: Principal, user: str) -> None:
        """Lift a block; raises not_found when there was none (the gate is cleared anyway)."""
        await self.require(room, actor)
        async with self.rt.pool.acquire() as conn, conn.transaction():
            reason = await conn.fetchval(
                "DELETE FROM room_blocks WHERE room = $1 AND user_id = $2 RETURNING reason",
                room, user)
            if reason is not None:
                await _audit(conn, room, actor.user, user, "unblock", "")
        await self.gate.remove(room, user)
        if reason is None:
            raise ModerationError("not_found", f"{user} is not blocked in this room")

    async def blocked(self, room: str, user: str) -> bool:
        return await self.gate.blocked(room, user)

    async def blocks(self, room: str, who: Principal) -> list[Block]:
        await self.require(room, who)
        rows = await self.rt.pool.fetch(
            """SELECT user_id, reason, blocked_by, blocked_at FROM room_blocks
               WHERE room = $1 ORDER BY blocked_at, user_id""", room)
        return [Block(*r.values()) for r in rows]

    # -- moderators ---------------------------------------------------------------------------
    async def appoint(self, room: str, actor: Principal, user: str) -> bool:
        """Make `user` a moderator of the room (creator only); False when already one."""
        _, creator = await self.require(room, actor, creator_only=True)
        if user == creator:
            raise ModerationError("invalid_value", "the creator moderates their room already")
        async with self.rt.pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                """INSERT INTO room_moderators (room, user_id, granted_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING RETURNING 1""", room, user, actor.user)
            if created:
                await _audit(conn, room, actor.user, user, "moderator_add", "")
        return bool(created)

    async def dismiss(self, room: str, actor: Principal, user: str) -> None:
        """Revoke a moderator (creator only); raises not_found when `user` was not one."""
        await self.require(room, actor, creator_only=True)
        async with self.rt.pool.acquire() as conn, conn.transaction():
            gone = await conn.fetchval(
                "DELETE FROM room_moderators WHERE room = $1 AND user_id = $2 RETURNING 1",
                room, user)
            if not gone:
                raise ModerationError("not_found", f"{user} is not a moderator of this room")
            await _audit(conn, room, actor.user, user, "moderator_remove", "")

    async def moderators(self, room: str, who: Principal) -> list[dict[str, str]]:
        await self.require(room, who)
        rows = await self.rt.pool.fetch(
            """SELECT user_id, granted_by, granted_at FROM room_moderators WHERE room = $1
               ORDER BY granted_at, user_id""", room)
        return [{"user": r["user_id"], "by": r["granted_by"], "at": r["granted_at"].isoformat()}
                for r in rows]

    # -- audit --------------------------------------------------------------------------------
    async def audit(self, room: str, who: Principal, *, before: int | None, limit: int
                    ) -> list[AuditEntry]:
        """The room's moderation log, newest first (creator only); `before`: an entry id."""
        await self.require(room, who, creator_only=True)
        rows = await self.rt.pool.fetch(
            """SELECT id, actor, target, action, reason, at FROM moderation_audit
               WHERE room = $1 AND ($2::bigint IS NULL OR id < $2)
               ORDER BY id DESC LIMIT $3""", room, before, limit)
        return [AuditEntry(*r.values()) for r in rows]


async def _audit(conn: Any, room: str, actor: str, target: str, action: Action,
                 reason: str) -> None:
    await conn.execute(
        """INSERT INTO moderation_audit (room, actor, target, action, reason)
           VALUES ($1, $2, $3, $4, $5)""", room, actor, target, action, reason)
