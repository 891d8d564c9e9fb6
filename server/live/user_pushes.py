"""Balance pushes: every change to a wallet reaches every connection of its user, on every process.

The scripts that change a wallet publish the new balance themselves, on the user's channel in the
wallet's slot (server/storage/lua/lib/balance_push.lua), so the push is atomic with the change and
costs one PUBLISH. This process subscribes to the channels of the users connected to it (one
subscription per user, however many of their connections it holds, on a pub/sub connection of its
own) and turns each push into a `balance` message for each of them.

Two orderings are kept here (docs/protocol.md, `balance`):
- a push is versioned by the wallet's change counter; one older than what a connection was last
  sent is dropped, so pushes that cross on the way (two processes, a held one) never go back;
- a connection's push for its own gift is held until that gift's reply is written: the client
  sees its `ack`, then the `balance`.
Pub/sub loses what is published while its connection is down: after a re-subscription every local
user gets a fresh read (`sync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from protocol import BalanceUpdate, ServerMessage
from server.auth import Principal
from server.hub.broker import Broker
from server.hub.brokers import open_broker
from server.runtime import Runtime

log = logging.getLogger("giftwire.pushes")

SYNC = "sync"
# How long a session's hello waits for its user's subscription before going on without it (Redis
# down: the broker re-subscribes when it is back, and that sends a sync).
SUBSCRIBE_WAIT_S = 5.0


class Recipient(Protocol):
    """What a push needs of a session (server/edge/connection.py)."""

    principal: Principal | None
    close_code: int | None

    def reply(self, msg: ServerMessage) -> None: ...


class _Seat:
    """One connection's push state."""

    __slots__ = ("conn", "held", "last", "later")

    def __init__(self, conn: Recipient) -> None:
        self.conn = conn
        self.last = -1  # version last sent
        self.held: dict[str, BalanceUpdate | None] = {}  # tx of a gift in progress -> its push
        # Pushes that came after a held one: they wait behind it, so the client never sees a
        # newer balance before the ack of an older change.
        self.later: list[BalanceUpdate] = []

    def holding(self) -> bool:
        return any(push is not None for push in self.held.values())


def parse_push(data: bytes) -> tuple[BalanceUpdate, str]:
    """A push payload ("<version> <coins> <diamonds or -> <reason> <tx>") -> message and tx."""
    version, coins, diamonds, reason, tx = data.decode().split(" ", 4)
    return BalanceUpdate(balance=int(coins), reason=reason, version=int(version),
                         diamonds=None if diamonds == "-" else int(diamonds)), tx


class UserPushes:
    def __init__(self, rt: Runtime, broker: Broker) -> None:
        self._rt = rt
        self._broker = broker
        self._seats: dict[Recipient, _Seat] = {}
        self._by_user: dict[str, list[_Seat]] = {}
        self._user_of: dict[str, str] = {}  # channel -> user
        self._tasks: set[asyncio.Task[None]] = set()
        # Other process-wide channels that share this pub/sub connection (revocations).
        self._channels: dict[str, Callable[[bytes], None]] = {}
        self._resubscribed: list[Callable[[], None]] = []
        broker.on_message = self._on_message
        broker.on_resubscribed = self._on_resubscribed

    @classmethod
    async def start(cls, rt: Runtime, stack: contextlib.AsyncExitStack) -> UserPushes:
        broker = open_broker(rt, "pushes")  # SSUBSCRIBE on a cluster: scripts SPUBLISH
        pushes = cls(rt, broker)
        await broker.start()
        stack.push_async_callback(pushes.stop)
        return pushes

    async def stop(self) -> None:
        await self._broker.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def broker(self) -> Broker:
        return self._broker

    # -- sessions -------------------------------------------------------------------------------

    async def attach(self, conn: Recipient) -> None:
        """Push the session's user's balance changes to it from now on: returns once this
        process's subscription is live (or after SUBSCRIBE_WAIT_S, when Redis cannot confirm it:
        the re-subscription then sends a sync)."""
        principal = conn.principal
        if principal is None or not principal.can_spend or conn in self._seats:
            return  # overlays have no wallet
        user = principal.user
        seat = self._seats[conn] = _Seat(conn)
        self._by_user.setdefault(user, []).append(seat)
        channel = self._rt.keys.balance_channel(user)
        self._user_of[channel] = user
        try:
            await asyncio.wait_for(self._broker.subscribe(channel), SUBSCRIBE_WAIT_S)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("balance pushes of %s not subscribed yet: %s", user, exc)

    def detach(self, conn: Recipient) -> None:
        seat = self._seats.pop(conn, None)
        if seat is None or conn.principal is None:
            return
        user = conn.principal.user
        seats = self._by_user.get(user, [])
        if seat in seats:
            seats.remove(seat)
        if not seats:
            self._by_user.pop(user, None)
            channel = self._rt.keys.balance_channel(user)
            self._user_of.pop(channel, None)
            self._broker.unsubscribe(channel)

    def hold(self, conn: Recipient, tx: str) -> None:
        """The session is carrying out its gift `tx`: its push waits for `release`."""
        seat = self._seats.get(conn)
        if seat is not None:
            seat.held.setdefault(tx, None)

    def release(self, conn: Recipient, tx: str) -> None:
        """The gift's reply (ack or error) is written: send its push if it came meanwhile."""
        seat = self._seats.get(conn)
        if seat is None or (push := seat.held.pop(tx, None)) is None:
            return
        seat.later.append(push)
        if not seat.holding():
            ready, seat.later = seat.later, []
            for queued in sorted(ready, key=lambda p: p.version):
                self._send(seat, queued)

    # -- pushes ---------------------------------------------------------------------------------

    async def listen(self, channel: str, handler: Callable[[bytes], None],
                     on_resubscribed: Callable[[], None]) -> None:
        """Another process-wide channel on this connection: its messages go to `handler`, and
        `on_resubscribed` runs after a re-subscription (what was published meanwhile is lost).
        Returns once subscribed (or after SUBSCRIBE_WAIT_S: the re-subscription then tells)."""
        self._channels[channel] = handler
        self._resubscribed.append(on_resubscribed)
        try:
            await asyncio.wait_for(self._broker.subscribe(channel), SUBSCRIBE_WAIT_S)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("%s not subscribed yet: %s", channel, exc)

    def _on_message(self, channel: str, data: bytes) -> None:
        if (handler := self._channels.get(channel)) is not None:
            handler(data)
            return
        user = self._user_of.get(channel)
        if user is None:
            return  # unsubscribed meanwhile
        push, tx = parse_push(data)
        for seat in self._by_user.get(user, ()):
            if tx and tx in seat.held:
                seat.held[tx] = push
            else:
                self._deliver(seat, push)

    def _deliver(self, seat: _Seat, push: BalanceUpdate) -> None:
        if seat.holding():
            seat.later.append(push)
        else:
            self._send(seat, push)

    def _send(self, seat: _Seat, push: BalanceUpdate) -> None:
        # A sync is a fresh read: equal to the last push is still worth confirming.
        stale = push.version < seat.last if push.reason == SYNC else push.version <= seat.last
        if stale or seat.conn.close_code is not None:
            return
        seat.last = push.version
        seat.conn.reply(push)

    def _on_resubscribed(self) -> None:
        for listener in self._resubscribed:
            listener()
        task = asyncio.get_running_loop().create_task(self.sync_all(), name="balance-sync")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sync_all(self) -> None:
        """A fresh balance to every local user's sessions (pushes may have been missed)."""
        users = list(self._by_user)
        if not users:
            return
        try:
            async with self._rt.redis.pipeline(transaction=False) as pipe:
                for user in users:
                    pipe.hmget(self._rt.keys.wallet(user), ["coins", "diamonds", "bv"])
                rows = await pipe.execute()
        except Exception as exc:  # Redis failing again: the next re-subscription syncs
            log.warning("balance sync failed: %s", exc)
            return
        for user, (coins, diamonds, version) in zip(users, rows, strict=True):
            push = BalanceUpdate(balance=int(coins or 0), reason=SYNC,
                                 version=int(version or 0), diamonds=int(diamonds or 0))
            for seat in self._by_user.get(user, ()):
                self._deliver(seat, push)
