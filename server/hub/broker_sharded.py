"""Sharded pub/sub on a Redis Cluster (SSUBSCRIBE/SPUBLISH, Redis >= 7.0).

A room's channel is in the room's slot (`{r:<room>}`), so its events are published by the master
serving that slot (the Lua scripts SPUBLISH them, server/storage/scripts.py) and only that shard
carries them: fan-out traffic scales with the masters instead of every node seeing every message,
as classic PUBLISH does on a cluster.

One subscriber connection per master holding rooms this process has members in (`_ShardLink`,
the classic broker's connection and liveness policy, server/hub/broker_redis.py, in the sharded
dialect). What moves a channel to another connection:
- the link's connection is lost or refused (a master died): the slot map is read again, and once
  a replica has been promoted its channels are subscribed there;
- the server unsubscribes a channel by itself (`sunsubscribe` pushed: the slot moved), or
  answers a subscribe with MOVED: the same, for that channel or that slot.
Messages published meanwhile are lost to pub/sub, so after each move (and after a link reconnects
to the same node) `on_resubscribed` runs and the hub recovers from the room history, as after the
classic broker's reconnect (docs/hub.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import quote

from redis.asyncio.cluster import RedisCluster

from server.hub.broker import Broker
from server.hub.broker_redis import RedisBroker
from server.storage.cluster.slots import Address, SlotMap, SlotMapUnavailable
from server.storage.resp import Endpoint

log = logging.getLogger("giftwire.broker")

_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 2.0


def _url(ep: Endpoint, address: Address) -> str:
    auth = ""
    if ep.password is not None:
        auth = f"{quote(ep.username or '', safe='')}:{quote(ep.password, safe='')}@"
    return f"{'rediss' if ep.tls else 'redis'}://{auth}{address[0]}:{address[1]}"


class _ShardLink(RedisBroker):
    """The subscriber connection to one master, in the sharded dialect."""

    SUBSCRIBE = "SSUBSCRIBE"
    UNSUBSCRIBE = "SUNSUBSCRIBE"
    MESSAGE = b"smessage"
    SUBSCRIBED = b"ssubscribe"
    UNSUBSCRIBED = b"sunsubscribe"

    def __init__(self, owner: ShardedBroker, address: Address, url: str,
                 publisher: RedisCluster, *, name: str, ping_interval_s: float,
                 connect_timeout_s: float) -> None:
        super().__init__(url, publisher, name=name, ping_interval_s=ping_interval_s,
                         connect_timeout_s=connect_timeout_s)
        self.owner = owner
        self.address = address

    def _send_subscribe(self, channels: Sequence[str]) -> None:
        # One SSUBSCRIBE per channel: the shard channels of one command must share a slot.
        for channel in channels:
            super()._send_subscribe([channel])

    def _error_reply(self, message: str) -> None:
        if message.startswith(("MOVED", "CLUSTERDOWN", "TRYAGAIN")):
            log.info("pub/sub on %s:%d: %s", *self.address, message)
            self.owner.misplaced()
        else:
            super()._error_reply(message)

    def _connection_lost(self) -> None:
        self.owner.misplaced()

    def _dropped(self, channel: str) -> None:
        self.owner.misplaced(channel)


class ShardedBroker(Broker):
    def __init__(
        self,
        publisher: RedisCluster,
        *,
        name: str = "giftwire-pubsub",
        ping_interval_s: float = 5.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self._publisher = publisher
        self._name = name
        self._ping_interval_s = ping_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._slots: SlotMap | None = None
        self._links: dict[Address, _ShardLink] = {}
        self._where: dict[str, _ShardLink] = {}  # wanted channel -> the link subscribing it
        self._dropped: set[str] = set()  # unsubscribed by the server: subscribe again
        self._wanted_check = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rebalancer: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()  # set after each rebalancing pass
        # Public counters: tests and metrics watch these.
        self.generation = 0  # +1 after each move of channels to other links
        self.moves = 0

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._where)

    @property
    def slots(self) -> SlotMap:
        assert self._slots is not None, "start() first"
        return self._slots

    def link_of(self, channel: str) -> Address | None:
        """The master whose connection carries `channel` now (tests, the operator view)."""
        link = self._where.get(channel)
        return link.address if link is not None else None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checked after every rebalancing pass (tests)."""
        while not predicate():
            self._progress.clear()
            await self._progress.wait()

    async def start(self) -> None:
        await self._publisher.initialize()
        self._slots = SlotMap.of(self._publisher, name=f"{self._name}-slots")
        await self._slots.refresh()
        self._rebalancer = asyncio.create_task(self._rebalance_loop(), name="broker-rebalance")

    async def stop(self) -> None:
        if self._rebalancer is not None:
            self._rebalancer.cancel()
            await asyncio.gather(self._rebalancer, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        links, self._links = list(self._links.values()), {}
        self._where.clear()
        await asyncio.gather(*(link.stop() for link in links))

    # -- pub/sub --------------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        while True:
            link = self._where.get(channel)
            if link is None:
                address = self.slots.owner_of(channel)
                if address is None:
                    await self.slots.refresh()
                    address = self.slots.owner_of(channel)
                    if address is None:
                        raise ConnectionError(f"no cluster master serves {channel}'s slot")
                link = self._where.setdefault(channel, self._link(address))
            try:
                await link.subscribe(channel)
                return
            except ConnectionError:
                if channel not in self._where:
                    raise  # unsubscribed meanwhile, or the broker stopped
                # Moved (or dropped by the server and subscribed again): wait for that.

    def unsubscribe(self, channel: str) -> None:
        link = self._where.pop(channel, None)
        self._dropped.discard(channel)
        if link is not None:
            link.unsubscribe(channel)

    async def publish(self, channel: str, data: bytes) -> int:
        if not isinstance(data, bytes):
            raise TypeError("the broker carries bytes only")
        return int(await self._publisher.spublish(channel, data))

    # -- links ----------------------------------------------------------------------------------

    def _link(self, address: Address) -> _ShardLink:
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = _ShardLink(
                self, address, _url(self.slots.endpoint(address), address), self._publisher,
                name=self._name, ping_interval_s=self._ping_interval_s,
                connect_timeout_s=self._connect_timeout_s)
            link.on_message = self._deliver
            link.on_resubscribed = self._relay_resubscribed
            # Subscribing needs no connection yet: the link subscribes what is wanted on connect.
            self._spawn(self._start_link(link))
        return link

    async def _start_link(self, link: _ShardLink) -> None:
        if self._links.get(link.address) is not link:
            return  # dropped (and stopped) before it started
        try:
            await link.start()
        except (OSError, TimeoutError) as exc:  # it keeps trying; the rebalancer may move it
            log.warning("pub/sub: no connection to %s:%d yet (%s)", *link.address, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deliver(self, channel: str, data: bytes) -> None:
        self.on_message(channel, data)

    def _relay_resubscribed(self) -> None:
        self.on_resubscribed()  # a link reconnected to its node: recover from history

    def misplaced(self, channel: str | None = None) -> None:
        """A link lost its node, or the server dropped `channel`: check where channels belong."""
        if channel is not None and channel in self._where:
            self._dropped.add(channel)
        self._wanted_check.set()

    async def _rebalance_loop(self) -> None:
        delay = _RETRY_MIN_S
        while True:
            await self._wanted_check.wait()
            self._wanted_check.clear()
            try:
                await self.slots.refresh()
            except SlotMapUnavailable as exc:
                log.warning("pub/sub: %s", exc)
            settled = await self._move_misplaced()
            self._progress.set()
            held = {id(link) for link in self._where.values()}
            for address, link in list(self._links.items()):
                if id(link) not in held:
                    del self._links[address]  # holds nothing (a dead master's, a moved slot's)
                    self._spawn(link.stop())
            if settled and all(link.connected for link in self._links.values()):
                delay = _RETRY_MIN_S
                continue
            # A link still down (its master not yet replaced) or a move unconfirmed: look again.
            await asyncio.sleep(delay)  # backoff while a failover completes, not a sync
            delay = min(delay * 2, _RETRY_MAX_S)
            self._wanted_check.set()

    async def _move_misplaced(self) -> bool:
        """Subscribe each channel whose slot another master serves now (or that the server
        dropped) on that master; True when every move was confirmed."""
        moved: list[tuple[str, _ShardLink]] = []
        dropped, self._dropped = self._dropped, set()
        for channel, link in list(self._where.items()):
            owner = self.slots.owner_of(channel)
            if owner is None or (owner == link.address and channel not in dropped):
                continue
            link.unsubscribe(channel)  # fails a subscribe waiting there: it follows the move
            target = self._where[channel] = self._link(owner)
            moved.append((channel, target))
        if not moved:
            return True
        log.warning("pub/sub: moving %d channel(s) to their slots' new masters", len(moved))
        results = await asyncio.gather(
            *(asyncio.wait_for(link.subscribe(ch), self._connect_timeout_s) for ch, link in moved),
            return_exceptions=True)
        confirmed = sum(1 for r in results if r is None)
        self.moves += confirmed
        if confirmed:
            self.generation += 1
            try:
                self.on_resubscribed()  # the hub recovers what pub/sub lost from room history
            except Exception:
                log.exception("on_resubscribed failed")
        return confirmed == len(moved)
