"""Sending gifts from a connection.

A gift: the wallet's spend script debits (idempotent per tx), then `room_event.lua` publishes the
room event (idempotent per tx, in the room's slot), then the client gets its ack. The two steps
are two slots, so not one atomic step; the guarantee (docs/hub.md): the room event is published
at least once per accepted tx and deduplicated by tx id, because a client that saw no ack retries
the same tx, the wallet answers "duplicate" without debiting, and the room script publishes if it
had not. A publish failure after a debit is reported as `unavailable` with the tx, never silently.
Combo clicks are gifts with a combo id; settling them is server/hub/combos.py.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from protocol import Ack, ComboEnd, ErrorCode, SendGift, ServerMessage
from server.auth import Principal
from server.edge.ratelimit import gift_budget
from server.hub.combos import ComboSweeper
from server.hub.roomstate import RoomState
from server.money.wallet import SpendRequest, SpendResult

log = logging.getLogger("giftwire.gifts")


class Requester(Protocol):
    """What sending a gift needs of the session that asked (server/edge/connection.py)."""

    principal: Principal | None
    rooms: set[str]

    def reply(self, msg: ServerMessage) -> None: ...

    def error(self, code: ErrorCode | str, message: str, request_id: str | None, *,
              tx: str | None = None, room: str | None = None, retry_ms: int | None = None
              ) -> None: ...

    def ack(self, msg: SendGift, balance: int, duplicate: bool) -> None: ...


class Gifts:
    def __init__(self, rt: Any, state: RoomState, sweeper: ComboSweeper) -> None:
        self.rt = rt
        self.state = state
        self.sweeper = sweeper
        # Shared with `POST /api/gifts`: one gift rate per user, whichever way they send.
        self.users = gift_budget(rt)

    async def send(self, conn: Requester, msg: SendGift, arrived: float | None = None) -> None:
        """`arrived`: when the request arrived (time.monotonic()), for the user's gift budget."""
        principal = conn.principal
        assert principal is not None
        if not principal.can_spend:
            conn.error(ErrorCode.FORBIDDEN, "this token cannot send gifts", msg.id, tx=msg.tx,
                       room=msg.room)
            return
        if msg.room not in conn.rooms:
            conn.error(ErrorCode.NOT_JOINED, "join the room before sending gifts", msg.id,
                       tx=msg.tx, room=msg.room)
            return
        retry = self.users.take(principal.user, arrived)
        if retry:
            conn.error(ErrorCode.RATE_LIMITED, "too many gifts", msg.id, tx=msg.tx, room=msg.room,
                       retry_ms=retry)
            return
        wallet = self.rt.components.get("wallet")
        if wallet is None:
            conn.error(ErrorCode.UNAVAILABLE, "gifting is not available", msg.id, tx=msg.tx,
                       room=msg.room, retry_ms=1000)
            return
        if await self.late_click(principal.user, msg.room, msg.combo, msg.tx):
            conn.error(ErrorCode.COMBO_NOT_FOUND, "that combo has settled: start a new combo id",
                       msg.id, tx=msg.tx, room=msg.room)
            return
        req = SpendRequest(principal.user, msg.room, msg.gift, msg.count, msg.tx, msg.combo)
        try:
            result = await wallet.spend(req)
        except Exception:
            log.exception("spend %s failed", msg.tx)
            conn.error(ErrorCode.UNAVAILABLE, "the wallet is unavailable; retry with the same tx",
                       msg.id, tx=msg.tx, room=msg.room, retry_ms=500)
            return
        if not result.ok:
            conn.error(result.code or ErrorCode.INTERNAL_ERROR, "gift refused", msg.id,
                       tx=msg.tx, room=msg.room)
            return
        try:
            await self.publish_spend(req, principal.name, result)
        except Exception:
            # Debited but not yet shown: the same tx retried completes the publish, once.
            log.exception("publishing %s failed after the debit", msg.tx)
            conn.error(ErrorCode.UNAVAILABLE, "accepted but not yet delivered; retry the same tx",
                       msg.id, tx=msg.tx, room=msg.room, retry_ms=500)
            return
        conn.ack(msg, result.balance, result.duplicate)

    async def late_click(self, user: str, room: str, combo: str | None, tx: str) -> bool:
        """A click for a combo that has settled (`combo_not_found`, nothing spent). A resend of a
        click spent before the settlement is not one: it goes on to the replay (ack, duplicate),
        since `combo_not_found` would tell the client its spent coins were not spent."""
        if combo is None or not await self.state.combo_settled(room, user, combo):
            return False
        wallet = self.rt.components.get("wallet")
        return wallet is None or not await wallet.spent(user, tx)

    async def publish_spend(self, req: SpendRequest, name: str, result: SpendResult) -> int | None:
        """The room event of an accepted spend (idempotent per tx): for any path that spends,
        the WebSocket above or an HTTP API. Returns the event's seq, None if already published."""
        combo = req.combo if result.streakable else None
        seq = await self.state.publish_gift(
            req.room, sender=req.user, name=name, tx=req.tx, gift=req.gift, count=req.count,
            coins=result.coins, combo=combo,
        )
        if combo is not None:
            self.sweeper.note(req.room)
        return seq

    async def end_combo(self, conn: Requester, msg: ComboEnd) -> None:
        principal = conn.principal
        assert principal is not None
        if not principal.can_spend:
            conn.error(ErrorCode.FORBIDDEN, "this token cannot send gifts", msg.id, room=msg.room)
            return
        settled = await self.state.settle_combos(msg.room, sender=principal.user, combo=msg.combo)
        if not settled:
            conn.error(ErrorCode.COMBO_NOT_FOUND, "no running combo with that id", msg.id,
                       room=msg.room)
            return
        # Replied with an ack naming the combo (the protocol's replies are joined, left, ack,
        # pong, error); the settled `gift` event itself reaches the room.
        wallet = self.rt.components.get("wallet")
        balance = await wallet.balance(principal.user) if wallet is not None else 0
        conn.reply(Ack(id=msg.id, tx=msg.combo, balance=balance, duplicate=False))
