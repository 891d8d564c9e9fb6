"""Sending gifts from a connection.

A gift: the wallet's spend script debits (idempotent per tx), then `room_event.lua` publishes the
room event (idempotent per tx, in the room's slot), then the client gets its ack. The two steps
are two slots, so not one atomic step; the guarantee (docs/hub.md): the room event is published
at least once per accepted tx and deduplicated by tx id, because a client that saw no ack retries
the same tx, the wallet answers "duplicate" without debiting, and the room script publishes if it
had not. A publish failure after a debit is reported as `unavailable` with the tx, never silently.
Combo clicks are gifts with a combo id: the spend script itself refuses, before debiting, a click
of a combo that has ended or that names another room or gift (the combo's record lives beside the
sender's wallet), and answers a retried click `dup` first, so a common click is still one debit
plus one room event (docs/hub.md, Combos). Settling them is server/hub/combos.py.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from protocol import Ack, ComboEnd, ErrorCode, SendGift, ServerMessage
from server.auth import Principal
from server.edge.ratelimit import gift_budget
from server.hub.combos import ComboSweeper
from server.hub.roomstate import RoomState
from server.live.user_pushes import UserPushes
from server.money.wallet import SpendRequest, SpendResult
from server.runtime import log_failure

log = logging.getLogger("giftwire.gifts")


class Requester(Protocol):
    """What sending a gift needs of the session that asked (server/edge/connection.py)."""

    principal: Principal | None
    rooms: set[str]
    close_code: int | None  # for its balance pushes (server/live/user_pushes.py)

    def reply(self, msg: ServerMessage) -> None: ...

    def error(self, code: ErrorCode | str, message: str, request_id: str | None, *,
              tx: str | None = None, room: str | None = None, retry_ms: int | None = None
              ) -> None: ...

    def ack(self, msg: SendGift, balance: int, duplicate: bool) -> None: ...


class Gifts:
    def __init__(self, rt: Any, state: RoomState, sweeper: ComboSweeper,
                 pushes: UserPushes | None = None) -> None:
        self.rt = rt
        self.state = state
        self.sweeper = sweeper
        self.pushes = pushes
        # Shared with `POST /api/gifts`: one gift rate per user, whichever way they send.
        self.users = gift_budget(rt)

    async def send(self, conn: Requester, msg: SendGift, arrived: float | None = None) -> None:
        """`arrived`: when the request arrived (time.monotonic()), for the user's gift budget.
        The gift's balance push to this session waits until its reply is queued (ack first)."""
        if self.pushes is None:
            await self._send(conn, msg, arrived)
            return
        self.pushes.hold(conn, msg.tx)
        try:
            await self._send(conn, msg, arrived)
        finally:
            self.pushes.release(conn, msg.tx)

    async def _send(self, conn: Requester, msg: SendGift, arrived: float | None) -> None:
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
        req = SpendRequest(principal.user, msg.room, msg.gift, msg.count, msg.tx, msg.combo)
        try:
            result = await wallet.spend(req)
        except Exception as exc:
            log_failure(log, f"spend {msg.tx}", exc)
            conn.error(ErrorCode.UNAVAILABLE, "the wallet is unavailable; retry with the same tx",
                       msg.id, tx=msg.tx, room=msg.room, retry_ms=500)
            return
        if not result.ok:
            conn.error(result.code or ErrorCode.INTERNAL_ERROR, "gift refused", msg.id,
                       tx=msg.tx, room=msg.room)
            return
        try:
            await self.publish_spend(req, principal.name, result)
        except Exception as exc:
            # Debited but not yet shown: the same tx retried completes the publish, once.
            log_failure(log, f"publishing {msg.tx} after the debit", exc)
            conn.error(ErrorCode.UNAVAILABLE, "accepted but not yet delivered; retry the same tx",
                       msg.id, tx=msg.tx, room=msg.room, retry_ms=500)
            return
        conn.ack(msg, result.balance, result.duplicate)

    async def publish_spend(self, req: SpendRequest, name: str, result: SpendResult) -> int | None:
        """The room event of an accepted spend (idempotent per tx): for any path that spends,
        the WebSocket above or an HTTP API. Returns the event's seq, None if already published."""
        combo = req.combo if result.streakable else None
        seq = await self.state.publish_gift(
            req.room, sender=req.user, name=name, tx=req.tx, gift=req.gift, count=req.count,
            coins=result.coins, combo=combo, at_ms=result.at_ms,
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
        wallet = self.rt.components.get("wallet")
        if wallet is not None:
            # Closed where clicks are charged first: none is charged after the settled event.
            await wallet.close_combo(principal.user, msg.combo)
        settled = await self.state.settle_combos(msg.room, sender=principal.user, combo=msg.combo)
        if not settled:
            conn.error(ErrorCode.COMBO_NOT_FOUND, "no running combo with that id", msg.id,
                       room=msg.room)
            return
        # Replied with an ack naming the combo (the protocol's replies are joined, left, ack,
        # pong, error); the settled `gift` event itself reaches the room.
        balance = await wallet.balance(principal.user) if wallet is not None else 0
        conn.reply(Ack(id=msg.id, tx=msg.combo, balance=balance, duplicate=False))
